#!/usr/bin/env bash
# Schemathesis against the example site's REST API on loopback: a throwaway SQLite database, a user with a DRF
# token, Django's runserver, then a bounded number of generated requests per operation. Fails on any 5xx or any
# response that violates the schema. Usage: .ci/schemathesis.sh [extra schemathesis options]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-50}"

work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# The embedded default, whatever the caller's environment: SQLite in $work, in-process delivery, console email.
unset REDIS_URL EMAIL_URL ANYMAIL_ESP
export DATABASE_URL="sqlite:///$work/db.sqlite3"
export DJANGO_SETTINGS_MODULE=example_project.settings
export DJANGO_DEBUG=0
export EMAIL_OTP_DELIVERY=sync

"$PY" manage.py migrate --noinput -v 0
token="$("$PY" manage.py shell -v 0 -c '
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
user = get_user_model().objects.create_user("schemathesis", "schemathesis@example.com", "not-used-here")
print(Token.objects.create(user=user).key)
')"
port="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

# Codes go to the console backend: keep them out of the CI log.
"$PY" manage.py runserver "127.0.0.1:$port" --noreload >"$work/server.log" 2>&1 &
server_pid=$!

status=0
.venv/bin/schemathesis run "http://127.0.0.1:$port/api/otp/schema/?format=json" \
    --wait-for-schema 30 \
    --header "Authorization: Token $token" \
    --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
    --max-examples "$MAX_EXAMPLES" \
    --workers 2 \
    --request-timeout 10 \
    --generation-database none \
    --seed "${SCHEMATHESIS_SEED:-20261123}" \
    --no-color \
    "$@" || status=$?

if [ "$status" -ne 0 ]; then
    echo "schemathesis failed (exit $status); the server's errors:"
    grep -E "Traceback|Error|\" 5[0-9][0-9] " "$work/server.log" | tail -40 || true
fi
exit "$status"
