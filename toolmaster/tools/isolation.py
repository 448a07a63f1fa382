"""Operating-system isolation layers for the tool sandbox, through Linux system calls (ctypes, no tools to install).

- namespaces: a user namespace (so an unprivileged process may build the rest), a mount namespace whose root
  is a fresh tmpfs holding only read-only binds of what Python needs plus a tmpfs scratch, a PID namespace (no
  other process is visible or signalable), a network namespace (no interface but a down loopback). No /proc
  is mounted, so no process's memory, environment or files are reachable through it.
- seccomp: a filter, installed in every tool process, that refuses process creation, exec, sockets, mounts,
  namespace changes, tracing, special files and kernel-facing calls; threads stay allowed.
- capabilities: every capability dropped in tool processes, so root inside the user namespace is powerless.

Each layer reports whether it became active; the sandbox keeps the ones the kernel allows (sandbox_child).
"""
from __future__ import annotations

import ctypes
import os
import platform
import struct
import sysconfig

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 0x400, 0x800, 0x200000
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
MNT_DETACH = 2
_LOCKED_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME  # kept on remount

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def unshare_namespaces() -> None:
    """Enter new user, mount, network and PID namespaces (the PID one applies to the next child), mapping
    this process's uid/gid to root inside. Raises OSError where the kernel refuses."""
    uid, gid = os.getuid(), os.getgid()
    _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID), "unshare")
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1")


def python_read_paths() -> list[str]:
    """What a tool process may read: the system's libraries and Python's standard library (no site-packages
    of the project's environment, no home directory, no project files)."""
    paths = ["/usr", "/lib", "/lib64", "/lib32", "/bin", os.path.dirname(os.__file__)]  # the stdlib, lib-dynload in it
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir and sysconfig.get_config_var("Py_ENABLE_SHARED"):
        paths.append(libdir)  # libpython*.so
    seen, out = set(), []
    for p in paths:
        if p and p not in seen and os.path.lexists(p):
            seen.add(p)
            out.append(p)
    return out


def _bind_readonly(source: str, target: str) -> None:
    _mount(source, target, None, MS_BIND | MS_REC)
    locked = os.statvfs(target).f_flag & _LOCKED_FLAGS  # an unprivileged remount must keep these
    _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | locked)


def build_root(new_root: str, scratch_mb: int) -> str:
    """Make ``new_root`` (an empty directory) the root of this mount namespace: read-only binds of
    python_read_paths(), /dev/null, a ``scratch_mb`` tmpfs at /tmp (returned), nothing else; the old root is
    detached and the new root itself is read-only. Call in the new PID namespace's first process."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing below propagates back to the host
    _mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for path in python_read_paths():
        target = new_root + path
        if os.path.islink(path) and not os.path.isdir(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(os.readlink(path), target)
        elif os.path.isdir(path) and not os.path.islink(path):
            if os.path.ismount(target) or _covered(path, new_root):
                continue
            os.makedirs(target, exist_ok=True)
            _bind_readonly(path, target)
    os.makedirs(new_root + "/dev", exist_ok=True)
    open(new_root + "/dev/null", "w").close()
    _mount("/dev/null", new_root + "/dev/null", None, MS_BIND)
    os.makedirs(new_root + "/tmp", exist_ok=True)
    _mount("tmpfs", new_root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={scratch_mb}m,mode=700")
    old = new_root + "/.old-root"
    os.makedirs(old, exist_ok=True)
    _check(_libc.syscall(_SYSCALLS["pivot_root"], new_root.encode(), old.encode()), "pivot_root")
    os.chdir("/")
    _check(_libc.umount2(b"/.old-root", MNT_DETACH), "umount old root")
    os.rmdir("/.old-root")
    _mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    return "/tmp"


def _covered(path: str, new_root: str) -> bool:
    """True when an ancestor of ``path`` is already bound (e.g. the stdlib under /usr)."""
    parent = os.path.dirname(path)
    while parent not in ("/", ""):
        if os.path.ismount(new_root + parent):
            return True
        parent = os.path.dirname(parent)
    return False


# --- seccomp ------------------------------------------------------------------------------------------------
# x86_64 only: the numbers are per architecture, and this is the one tested; elsewhere the layer reports inactive.
_SYSCALLS = {
    "fork": 57, "vfork": 58, "execve": 59, "execveat": 322, "clone": 56, "clone3": 435, "kill": 62, "tkill": 200,
    "tgkill": 234, "socket": 41, "socketpair": 53, "connect": 42, "bind": 49, "listen": 50, "accept": 43,
    "accept4": 288, "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "mount": 165,
    "umount2": 166, "pivot_root": 155, "chroot": 161, "unshare": 272, "setns": 308, "mknod": 133, "mknodat": 259,
    "keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
    "open_by_handle_at": 304, "name_to_handle_at": 303, "init_module": 175, "finit_module": 313,
    "delete_module": 176, "kexec_load": 246, "reboot": 169, "swapon": 167, "swapoff": 168, "sethostname": 170,
    "setdomainname": 171, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "fanotify_init": 300, "setuid": 105, "setgid": 106, "setreuid": 113, "setregid": 114, "setresuid": 117,
    "setresgid": 119, "capset": 126, "seccomp": 317, "personality": 135, "acct": 163,
    "quotactl": 179, "move_mount": 429, "open_tree": 428, "fsopen": 430, "fsmount": 432, "mount_setattr": 442,
}
_REFUSED = ["fork", "vfork", "execve", "execveat", "kill", "socket", "socketpair", "connect", "bind", "listen",
            "accept", "accept4", "ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2", "pivot_root",
            "chroot", "unshare", "setns", "mknod", "mknodat", "keyctl", "add_key", "request_key", "bpf",
            "perf_event_open", "userfaultfd", "open_by_handle_at", "name_to_handle_at", "init_module",
            "finit_module", "delete_module", "kexec_load", "reboot", "swapon", "swapoff", "sethostname",
            "setdomainname", "io_uring_setup", "io_uring_enter", "io_uring_register", "fanotify_init", "setuid",
            "setgid", "setreuid", "setregid", "setresuid", "setresgid", "capset", "personality", "acct",
            "quotactl", "move_mount", "open_tree", "fsopen", "fsmount", "mount_setattr", "seccomp"]
_AUDIT_ARCH_X86_64 = 0xC000003E
_CLONE_THREAD = 0x10000
_X32_BIT = 0x40000000
_EPERM, _ENOSYS = 1, 38
_RET_ALLOW, _RET_ERRNO, _RET_KILL = 0x7FFF0000, 0x00050000, 0x80000000
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, _PR_CAPBSET_DROP = 38, 22, 2, 24


def seccomp_supported() -> bool:
    return platform.machine() == "x86_64"


def _filter(own_pid: int) -> bytes:
    """A BPF program over seccomp_data {nr @0, arch @4, ip @8, args @16 + 8·i}. Signals may only target the
    tool's own process (tgkill/tkill, which raise() uses); clone only makes threads; clone3 says ENOSYS so
    the C library falls back to clone."""
    program: list = []  # (code, k, jump-if-true label or None, jump-if-false label or None) or a label

    def op(code, k, jt=None, jf=None):
        program.append((code, k, jt, jf))

    op(_LD_W_ABS, 4)
    op(_JEQ_K, _AUDIT_ARCH_X86_64, "nr", None)
    op(_RET_K, _RET_KILL)
    program.append("nr")
    op(_LD_W_ABS, 0)
    op(_JGE_K, _X32_BIT, "refuse", None)  # the x32 ABI's numbering would bypass the table
    for name in _REFUSED:
        op(_JEQ_K, _SYSCALLS[name], "refuse", None)
    op(_JEQ_K, _SYSCALLS["clone"], None, "not_clone")
    op(_LD_W_ABS, 16)
    op(_JSET_K, _CLONE_THREAD, "allow", "refuse")
    program.append("not_clone")
    op(_JEQ_K, _SYSCALLS["clone3"], "enosys", None)
    op(_JEQ_K, _SYSCALLS["tgkill"], "signal", None)
    op(_JEQ_K, _SYSCALLS["tkill"], "signal", "allow")
    program.append("signal")
    op(_LD_W_ABS, 16)
    op(_JEQ_K, own_pid, "allow", "refuse")
    program.append("allow")
    op(_RET_K, _RET_ALLOW)
    program.append("refuse")
    op(_RET_K, _RET_ERRNO | _EPERM)
    program.append("enosys")
    op(_RET_K, _RET_ERRNO | _ENOSYS)

    labels, pc = {}, 0
    for item in program:
        if isinstance(item, str):
            labels[item] = pc
        else:
            pc += 1
    out, pc = [], 0
    for item in program:
        if isinstance(item, str):
            continue
        code, k, jt, jf = item
        jump_true, jump_false = (0 if label is None else labels[label] - pc - 1 for label in (jt, jf))
        out.append(struct.pack("HBBI", code, jump_true, jump_false, k))
        pc += 1
    return b"".join(out)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_PID_PLACEHOLDER = 0x7FFFFFFF
_program = bytearray(_filter(_PID_PLACEHOLDER))  # built once; each tool process writes its own pid in
_pid_offset = next(i for i in range(0, len(_program), 8)
                   if struct.unpack_from("HBBI", _program, i)[3] == _PID_PLACEHOLDER) + 4


def install_seccomp() -> None:
    """Irreversible for this process and its threads. Needs no privilege (no_new_privs is set first)."""
    struct.pack_into("I", _program, _pid_offset, os.getpid())
    buf = (ctypes.c_char * len(_program)).from_buffer(_program)
    prog = _SockFprog(len(_program) // 8, ctypes.addressof(buf))
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(no_new_privs)")
    _check(_libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0), "prctl(seccomp)")


def drop_capabilities() -> None:
    """Empty the bounding, effective, permitted and inheritable sets (root in the user namespace keeps none)."""
    for cap in range(64):
        if _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == 22:  # EINVAL: past the last
            break
    header = struct.pack("II", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = bytes(24)  # two {effective, permitted, inheritable} u32 triples, all zero
    _check(_libc.syscall(_SYSCALLS["capset"], header, data), "capset")
