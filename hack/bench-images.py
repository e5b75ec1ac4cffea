#!/usr/bin/env python3
"""Builds the benchmark images and pushes them to a registry (plain HTTP, registry API v2).

bench/busybox:1     one gzip layer: a static busybox rootfs (like the e2e fixtures)
bench/pause:1       a static /pause (sleeps, reaps children), built with cc; busybox
                    `sleep inf` where no static C toolchain is at hand
bench/six-layers:1  six gzip layers, ~150 MB unpacked: files of mixed compressible and
                    incompressible content, like a real application image
"""
import gzip, hashlib, io, json, os, random, sys, tarfile, urllib.request

def digest(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()

def req(method, url, data=None, headers=None):
    r = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(r) as resp:
        return resp.status, dict(resp.headers), resp.read()

def push_blob(reg, repo, data):
    d = digest(data)
    try:
        req("HEAD", f"http://{reg}/v2/{repo}/blobs/{d}")
        return d
    except urllib.error.HTTPError:
        pass
    _, h, _ = req("POST", f"http://{reg}/v2/{repo}/blobs/uploads/")
    loc = h["Location"]
    if loc.startswith("/"):
        loc = f"http://{reg}{loc}"
    sep = "&" if "?" in loc else "?"
    req("PUT", f"{loc}{sep}digest={d}", data=data, headers={"Content-Type": "application/octet-stream"})
    return d

def layer(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, payload, mode in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1704067200
            ti.mode = mode
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            elif kind == "sym":
                ti.type = tarfile.SYMTYPE
                ti.linkname = payload
                t.addfile(ti)
            else:
                ti.size = len(payload)
                t.addfile(ti, io.BytesIO(payload))
    raw = buf.getvalue()
    return raw, gzip.compress(raw, compresslevel=6, mtime=0)

def push_image(reg, repo, tag, layers, entrypoint=None):
    descs, diff_ids = [], []
    for raw, gz in layers:
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                      "digest": push_blob(reg, repo, gz), "size": len(gz)})
        diff_ids.append(digest(raw))
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    config = json.dumps({"architecture": arch, "os": "linux",
                         "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                                    "Cmd": ["/bin/sh"], **({"Entrypoint": entrypoint} if entrypoint else {})},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": push_blob(reg, repo, config), "size": len(config)},
                           "layers": descs}).encode()
    req("PUT", f"http://{reg}/v2/{repo}/manifests/{tag}", data=manifest,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    print(f"pushed {repo}:{tag}: {len(layers)} layers, {sum(len(g) for _, g in layers) / 1e6:.1f} MB compressed, "
          f"{sum(len(r) for r, _ in layers) / 1e6:.1f} MB unpacked")

# What registry.k8s.io/pause does: sleep until SIGINT/SIGTERM, reaping children.
PAUSE_C = r"""
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void quit(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
    struct sigaction a = {0};
    a.sa_handler = quit;
    sigaction(SIGINT, &a, 0);
    sigaction(SIGTERM, &a, 0);
    a.sa_handler = reap;
    a.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &a, 0);
    for (;;) pause();
}
"""

def build_pause():
    """A static pause binary like the real pause image's (a few hundred KiB of RSS, where a
    busybox `sleep` has more than a MiB), or None where no static C toolchain is at hand."""
    import shutil, subprocess, tempfile
    if not shutil.which("cc"):
        return None
    with tempfile.TemporaryDirectory() as d:
        src, out = os.path.join(d, "pause.c"), os.path.join(d, "pause")
        open(src, "w").write(PAUSE_C)
        r = subprocess.run(["cc", "-Os", "-static", "-s", "-o", out, src], capture_output=True)
        if r.returncode != 0:
            print("bench-images: no static pause (" + r.stderr.decode(errors="replace").strip()[:200]
                  + "); busybox sleep instead", file=sys.stderr)
            return None
        return open(out, "rb").read()

def main():
    reg = sys.argv[1]
    bb = open("/bin/busybox", "rb").read()
    entries = [("bin", "dir", None, 0o755), ("bin/busybox", "file", bb, 0o755)]
    entries += [(f"bin/{a}", "sym", "busybox", 0o777) for a in ["sh", "ls", "cat", "echo", "sleep", "true"]]
    entries += [("etc", "dir", None, 0o755), ("etc/passwd", "file", b"root:x:0:0:root:/root:/bin/sh\n", 0o644),
                ("tmp", "dir", None, 0o1777)]
    push_image(reg, "bench/busybox", "1", [layer(entries)])
    # A pause for runtimes that run one per pod (containerd's sandbox_image). Its layer must
    # not be busybox's: with a shared layer, removing bench/busybox would leave the layer to
    # the pause image, and a "cold" pull of busybox would be warm.
    pause_bin = build_pause()
    if pause_bin:
        pause_layer = layer([("pause", "file", pause_bin, 0o755)])
        pause_cmd = ["/pause"]
    else:
        pause_layer = layer(entries + [("etc/bench-pause", "file", b"pause\n", 0o644)])
        pause_cmd = ["/bin/sleep", "inf"]
    push_image(reg, "bench/pause", "1", [pause_layer], entrypoint=pause_cmd)

    rng = random.Random(42)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9))) for _ in range(2000)]
    layers = [layer(entries)]
    for n in range(5):
        es = [(f"opt/app{n}", "dir", None, 0o755)]
        for f in range(60):
            size = 500_000
            if f % 2:
                payload = rng.randbytes(size)
            else:
                payload = b" ".join(rng.choice(words) for _ in range(size // 6))[:size]
            es.append((f"opt/app{n}/file{f:03}", "file", payload, 0o644))
        layers.append(layer([("opt", "dir", None, 0o755)] + es))
    push_image(reg, "bench/six-layers", "1", layers)

if __name__ == "__main__":
    main()
