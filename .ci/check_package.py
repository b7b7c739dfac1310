"""Build the sdist and the wheel and check what they carry: the licence, every shipped locale compiled, the
templates, static files and py.typed, and nothing of the tests or the example site."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "build", "--outdir", out, str(ROOT)]
        subprocess.run(command, check=True, capture_output=True)  # noqa: S603 - our own interpreter and paths
        [wheel] = Path(out).glob("*.whl")
        [sdist] = Path(out).glob("*.tar.gz")
        wheel_names = zipfile.ZipFile(wheel).namelist()
        with tarfile.open(sdist) as archive:
            sdist_names = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    locales = sorted(
        path.parent.parent.name for path in (ROOT / "django_emailotp/locale").glob("*/LC_MESSAGES/django.po")
    )
    problems = []
    expected_in_wheel = [
        "django_emailotp/py.typed",
        "django_emailotp/templates/django_emailotp/email/body.html",
        *(f"django_emailotp/locale/{locale}/LC_MESSAGES/django.mo" for locale in locales),
    ]
    problems += [f"wheel lacks {name}" for name in expected_in_wheel if name not in wheel_names]
    if not any(name.endswith(".dist-info/licenses/LICENSE") for name in wheel_names):
        problems.append("wheel lacks the LICENSE")
    if not any(name.startswith("django_emailotp/static/") for name in wheel_names):
        problems.append("wheel lacks the static files")
    problems += [f"wheel carries {name}" for name in wheel_names if name.startswith(("tests/", "example_project/"))]
    problems += [f"sdist lacks {name}" for name in ("LICENSE", "README.md", "CHANGELOG.md") if name not in sdist_names]
    for problem in problems:
        print(problem)
    print(f"{wheel.name}: {len(wheel_names)} files, locales {', '.join(locales)}; {sdist.name} checked")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
