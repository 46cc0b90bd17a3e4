#!/usr/bin/env python3
"""test_component_copy.py SOURCE_DIR SCRATCH_DIR [CMAKE]

Does what the IDF Component Manager does for a `git:` dependency on this
repository (no `path:`: the component is the repository root) and checks
that the copy builds on its own:

1. the checkout: the files git tracks (`git ls-files`), as the manager's
   `git checkout <ref> -- <path>` gives them (taken from the work tree, so
   uncommitted edits of tracked files count);
2. the manager's filter (idf_component_tools/file_tools.py,
   filtered_paths(): everything, minus its default excludes, minus the
   manifest's `files: exclude`, directories dropped, plus `files: include`;
   each pattern a pathlib glob relative to the component) into
   SCRATCH_DIR/managed_components/tcpota/;
3. the registration: the copy's CMakeLists.txt run in CMake script mode
   (as ESP-IDF's early expansion does, ESP_PLATFORM=1) with a stub
   idf_component_register() that writes out what it was given; every
   source, include folder and Kconfig file must exist in the copy and lie
   inside it, and every .c of esp-idf/components/tcpota must be registered;
4. with IDF_PATH set: the copy compiled for the ESP32-C3 by
   check/esp-idf-check.sh with the copy as the component root (needs
   riscv64-unknown-elf-gcc: `make esp-idf-check` installs it).

Before that it checks itself: a component that registers a source outside
its folder must be reported. Exit 0: pass; 1: fail; 77: skipped (not a git
checkout).
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

NAME = "tcpota"
ESP_DIR = "esp-idf/components/tcpota"

# idf-component-manager 3.0.3, idf_component_tools/file_tools.py
DEFAULT_EXCLUDE = [
    "**/__pycache__", "**/*.pyc", "**/*.pyd", "**/*.pyo", "**/.DS_Store",
    "**/.git/**/*", "**/.svn/**/*", "**/dist/**/*", "**/build/**/*", "**/build_*/**/*",
    "**/managed_components/**/*", "**/dependencies.lock", "**/.github/**/*",
    "**/.gitlab-ci.yml", "**/.idea/**/*", "**/.vscode/**/*", "**/.settings/**/*",
    "**/sdkconfig", "**/sdkconfig.old", "**/.component_hash",
]

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def manifest_files(manifest):
    """The `files:` section of idf_component.yml: (include, exclude).
    Enough YAML for our own manifest; anything else in the section is
    refused rather than misread."""
    include, exclude, cur, inside = [], [], None, False
    for raw in manifest.read_text().splitlines():
        line = raw.split(" #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        if not line.startswith(" "):
            inside = line == "files:"
            continue
        if not inside:
            continue
        s = line.strip()
        if s in ("include:", "exclude:"):
            cur = include if s == "include:" else exclude
        elif s.startswith("- ") and cur is not None:
            cur.append(s[2:].strip().strip("\"'"))
        else:
            raise SystemExit(f"{manifest}: files: entry not understood by this test: {s!r}")
    return include, exclude


def filtered_paths(base, include, exclude):
    """The manager's filtered_paths(use_gitignore=False, exclude_default=True)."""
    base = Path(base)
    paths = set(base.glob("**/*"))
    for pattern in DEFAULT_EXCLUDE + list(exclude):
        paths.difference_update(base.glob(pattern))
    paths = {p for p in paths if not p.is_dir()}
    for pattern in include:
        paths.update(base.glob(pattern))
    return paths


def copy_filtered(src, dst, include, exclude):
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for p in sorted(filtered_paths(src, include, exclude)):
        rel = os.path.relpath(p, src)
        out = dst / rel
        if p.is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, out)
        else:
            out.mkdir(parents=True, exist_ok=True)


def checkout(source, dst):
    """The tracked files of source, as a checkout of it has them."""
    r = subprocess.run(["git", "-C", str(source), "ls-files", "-z"], capture_output=True)
    if r.returncode != 0:
        return False
    if dst.exists():
        shutil.rmtree(dst)
    for rel in r.stdout.decode().split("\0"):
        src = source / rel
        if not rel or not src.is_file():  # deleted in the work tree, or a submodule
            continue
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, out)
    return True


STUB = r"""
set(ESP_PLATFORM 1)
set(COMPONENT_DIR "@DIR@")
set(COMPONENT_NAME "@NAME@")
function(idf_component_register)
    cmake_parse_arguments(_ "WHOLE_ARCHIVE" "KCONFIG;KCONFIG_PROJBUILD"
        "SRCS;SRC_DIRS;EXCLUDE_SRCS;INCLUDE_DIRS;PRIV_INCLUDE_DIRS;LDFRAGMENTS;REQUIRES;PRIV_REQUIRES;REQUIRED_IDF_TARGETS;EMBED_FILES;EMBED_TXTFILES" ${ARGN})
    set(out "")
    foreach(kind SRCS SRC_DIRS INCLUDE_DIRS PRIV_INCLUDE_DIRS LDFRAGMENTS EMBED_FILES EMBED_TXTFILES KCONFIG KCONFIG_PROJBUILD)
        foreach(item IN LISTS __${kind})
            string(APPEND out "${kind}\t${item}\n")
        endforeach()
    endforeach()
    file(WRITE "@OUT@" "${out}")
endfunction()
include("@DIR@/CMakeLists.txt")
"""


def registration(cmake, comp, scratch):
    """What comp/CMakeLists.txt registers: [(kind, absolute path)]."""
    out = scratch / "registered.txt"
    driver = scratch / "register.cmake"
    if out.exists():
        out.unlink()
    driver.write_text(STUB.replace("@DIR@", str(comp)).replace("@NAME@", NAME)
                      .replace("@OUT@", str(out)))
    r = subprocess.run([cmake, "-P", str(driver)], capture_output=True, text=True)
    if r.returncode != 0 or not out.exists():
        fail(f"{comp}/CMakeLists.txt did not register a component in ESP-IDF mode:\n{r.stderr}")
        return []
    items = []
    for line in out.read_text().splitlines():
        kind, path = line.split("\t", 1)
        p = Path(path)
        items.append((kind, p if p.is_absolute() else comp / p))
    return items


def check_registration(cmake, comp, scratch):
    """Problems with what comp registers, as sentences."""
    problems = []
    items = registration(cmake, comp, scratch)
    real = comp.resolve()
    for kind, p in items:
        r = p.resolve()
        if r != real and real not in r.parents:
            problems.append(f"{kind} {p} is outside the copied component {comp}")
        elif kind in ("SRC_DIRS", "INCLUDE_DIRS", "PRIV_INCLUDE_DIRS"):
            if not p.is_dir():
                problems.append(f"{kind} {p} is not a folder in the copy")
        elif not p.is_file():
            problems.append(f"{kind} {p} is not in the copy")
    if items and not any(k == "SRCS" for k, _ in items):
        problems.append("no SRCS registered")
    return problems, items


def self_check(cmake, scratch):
    """A registration that reaches outside its folder must be reported."""
    root = scratch / "selfcheck"
    if root.exists():
        shutil.rmtree(root)
    comp = root / "comp"
    comp.mkdir(parents=True)
    (root / "outside.c").write_text("int outside;\n")
    (comp / "inside.c").write_text("int inside;\n")
    (comp / "CMakeLists.txt").write_text(
        'idf_component_register(SRCS "inside.c" "${CMAKE_CURRENT_LIST_DIR}/../outside.c")\n')
    problems, _ = check_registration(cmake, comp, root)
    if not any("outside.c is outside" in p for p in problems):
        fail("self-check: a source outside the component was not reported")


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    source = Path(sys.argv[1]).resolve()
    scratch = Path(sys.argv[2]).resolve()
    cmake = sys.argv[3] if len(sys.argv) > 3 else "cmake"
    scratch.mkdir(parents=True, exist_ok=True)

    self_check(cmake, scratch)

    stage = scratch / "checkout"
    if not checkout(source, stage):
        print(f"SKIP: {source} is not a git checkout: cannot list what a git dependency holds")
        return 77
    include, exclude = manifest_files(source / "idf_component.yml")
    comp = scratch / "managed_components" / NAME
    copy_filtered(stage, comp, include, exclude)
    nfiles = sum(1 for p in comp.rglob("*") if p.is_file())
    print(f"copied {nfiles} files into {comp} "
          f"({len(exclude)} excludes, {len(include)} includes from idf_component.yml)")

    for must in ("CMakeLists.txt", "idf_component.yml"):
        if not (comp / must).is_file():
            fail(f"{must} is not in the copy: the manager would not see a component")
    problems, items = check_registration(cmake, comp, scratch)
    for p in problems:
        fail(p)
    registered = {p.resolve() for k, p in items if k == "SRCS"}
    for c in sorted((stage / ESP_DIR).glob("*.c")):
        if (comp / ESP_DIR / c.name).resolve() not in registered:
            fail(f"{ESP_DIR}/{c.name} is not registered (SRCS) or not copied")
    print(f"registered: {sum(1 for k, _ in items if k == 'SRCS')} sources, "
          f"{sum(1 for k, _ in items if k == 'INCLUDE_DIRS')} include folders, "
          f"{sum(1 for k, _ in items if k == 'KCONFIG')} Kconfig")

    idf = os.environ.get("IDF_PATH")
    if failures:
        pass
    elif not idf:
        print("IDF_PATH not set: the copy was not compiled (set it to compile it as "
              "`make esp-idf-check` does)")
    elif not shutil.which("riscv64-unknown-elf-gcc"):
        fail("IDF_PATH is set but riscv64-unknown-elf-gcc is missing "
             "(`make esp-idf-check` installs it)")
    else:
        script = source / ESP_DIR / "check" / "esp-idf-check.sh"
        r = subprocess.run(["bash", str(script), idf, str(scratch / "objs"), str(comp)])
        if r.returncode != 0:
            fail(f"the copy does not compile against {idf} (esp-idf-check.sh, above)")

    if failures:
        print(f"{len(failures)} problem(s): the component the manager copies does not build on its own")
        return 1
    print("ok: the managed copy holds everything the component registers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
