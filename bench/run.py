"""`make bench`: Nabaa's broadcast rate against pywebpush, side by side, in one run, on this machine.

1. a fresh `redis-server` (AOF on, as in production) and N synthetic subscribers with FCM-length endpoints;
2. a local TLS push service (`bench.sink`) that checks every request's VAPID token, encoding and size;
3. the API (`nabaa api`) and `--workers` × `nabaa worker`, started as production starts them; one alert
   is POSTed and timed from the 202 to the last push;
4. to the same push service: pywebpush at its best (`bench.baselines`), taking turns with step 3 for
   `--rounds` rounds (each reported by its median round), then pywebpush as documented once;
5. prints the table, writes JSON and a plot of throughput over the broadcast into `bench-results/`.

    python -m bench.run [--subscribers 20000] [--workers 2] [--rounds 3] [--baseline-seconds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import redis

from core.keys import Keys
from core.records import Subscription, pack_path, subscription_id
from core.subscriptions import UPSERT
from core.vapid import write_private_key
from nabaa.embedded_redis import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")
TOKEN = "bench-editor-token-" + secrets.token_hex(8)


def make_cert(directory: Path) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "sink.pem", directory / "sink.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def populate(url: str, prefix: str, origin: str, count: int) -> None:
    """N subscribers with FCM-length endpoints (~190 characters) and real P-256 keys (a pool of 512)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pool = [ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint) for _ in range(512)]
    client = redis.Redis.from_url(url)
    script = client.register_script(UPSERT)
    keys = Keys(prefix)
    now = int(time.time())
    pipe = client.pipeline(transaction=False)
    host = origin.split("://", 1)[1]
    for i in range(count):
        # FCM endpoints: /fcm/send/<instance id>:<registration token>, ~152 characters in all
        token = f"{secrets.token_urlsafe(16)[:22]}:APA91b{secrets.token_urlsafe(96)[:124]}"
        endpoint = f"{origin}/fcm/send/{token}"
        sub = Subscription(subscription_id(endpoint), endpoint, pool[i % len(pool)], secrets.token_bytes(16),
                           (), "ar", now, now)
        shard = __import__("core.records", fromlist=["shard_of"]).shard_of(sub.id)
        script(keys=[keys.subs(shard), keys.counts(shard)],
               args=[sub.id, "", "ar", f"https://{host}", now, sub.p256dh + sub.auth + pack_path(f"/fcm/send/{token}")],
               client=pipe)
        if i % 2000 == 1999:
            pipe.execute()
    pipe.execute()
    client.close()


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_http(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def http_json(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status, json.loads(answer.read() or b"{}")


def read_stats(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"accepted": 0, "rejected": 0}


def run_nabaa(args, work: Path, redis_url: str, prefix: str, origin: str, cert: str, key_file: str,
              stats_path: Path, others: dict[str, int]) -> dict:
    """`others`: the pids of the processes that share the machine with the workers (push service, Redis),
    whose CPU during the broadcast is reported beside theirs."""
    env = {**os.environ, "NABAA_ENV": "production", "REDIS_URL": redis_url, "REDIS_PREFIX": prefix,
           "EDITOR_TOKEN": TOKEN, "VAPID_PRIVATE_KEY_FILE": key_file, "VAPID_SUBJECT": "mailto:bench@nabaa.example",
           "SITE_ORIGIN": "https://news.example", "PUSH_ALLOWED_HOSTS": origin.split("://")[1],
           "PUSH_ALLOW_INSECURE": "1", "PUSH_CA_FILE": cert, "DATA_DIR": str(work), "LOG_LEVEL": "WARNING"}
    api_port = free_port()
    nabaa = [sys.executable, "-m", "nabaa"]
    api = subprocess.Popen(nabaa + ["api", "--port", str(api_port)], env=env)
    workers = [subprocess.Popen(nabaa + ["worker"], env=env) for _ in range(args.workers)]
    spies = []
    if args.profile:  # py-spy samples each worker; its own CPU is not counted as the workers'
        spy = str(Path(sys.executable).parent / "py-spy")
        native = ["--native"] if args.profile_native else []
        spies = [subprocess.Popen([spy, "record", "--format", "raw", "--rate", "200", *native, "--pid", str(w.pid),
                                   "-o", str(Path(args.out) / f"profile-worker{i}.txt")], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for i, w in enumerate(workers)]
    try:
        wait_http(f"http://127.0.0.1:{api_port}/readyz")
        time.sleep(1.0)  # the workers are blocked on the stream, ready
        os.kill(others["push service"], signal.SIGUSR1)  # its first and last push are this round's
        time.sleep(0.1)
        others = {**others, "api": api.pid}
        cpu_before = {w.pid: proc_cpu_s(w.pid) for w in workers}
        others_before = {name: proc_cpu_s(pid) for name, pid in others.items()}
        stats_before = read_stats(stats_path)
        before = stats_before["accepted"]
        t0 = time.time()
        status, answer = http_json("POST", f"http://127.0.0.1:{api_port}/api/v1/alerts",
                                   {"title": "عاجل: اختبار السرعة", "body": "نص الخبر " * 8, "url": "/"})
        t_202 = time.time()
        assert status == 202, answer
        alert_id = answer["id"]
        deadline = time.monotonic() + max(600, args.subscribers / 500)
        alert = {}
        while time.monotonic() < deadline:
            _, alert = http_json("GET", f"http://127.0.0.1:{api_port}/api/v1/alerts/{alert_id}")
            if alert["status"] in ("done", "failed"):
                break
            time.sleep(0.05)
        t_done = time.time()
        cpu = sum(proc_cpu_s(w.pid) - cpu_before[w.pid] for w in workers)
        others_cpu = {name: proc_cpu_s(pid) - others_before[name] for name, pid in others.items()}
        peak = max(proc_peak_rss_mb(w.pid) for w in workers)
        time.sleep(0.6)
        stats = read_stats(stats_path)
    finally:
        for spy_process in spies:
            spy_process.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
            spy_process.wait(30)
        for process in [api, *workers]:
            process.terminate()
        for process in [api, *workers]:
            process.wait(30)
    counts = alert.get("counts", {})
    sent = counts.get("sent", 0)
    wall = t_done - t_202
    return {
        "name": f"nabaa ({args.workers} workers)", "status": alert.get("status"), "targeted": counts.get("targeted"),
        "sent": sent, "failed": counts.get("failed"), "sink_accepted": stats["accepted"] - before,
        "connections": stats.get("connections", 0) - stats_before.get("connections", 0),
        "sink_rejected": stats.get("rejected", 0) - stats_before.get("rejected", 0),
        "sink_reasons": stats.get("reasons", {}),  # since the push service started (all rounds so far)
        "wall_s": wall, "rate": sent / wall if wall else 0, "cpu_s": cpu, "per_cpu_s": sent / cpu if cpu else 0,
        "first_push_ms": ((stats.get("first_at") or t_202) - t_202) * 1000 if stats.get("first_at") else None,
        "last_push_s": (stats["last_at"] - t_202) if stats.get("last_at") else None,
        "api_202_ms": (t_202 - t0) * 1000, "peak_rss_mb": peak, "per_tenth": stats.get("per_tenth", []),
        "broadcast_start": t_202, "others_cpu_s": others_cpu,
    }


def run_baseline(mode: str, args, redis_url, prefix, cert, key_file, work: Path, stats_path: Path) -> dict:
    out = work / f"{mode}.json"
    before = read_stats(stats_path)["accepted"]
    limit = args.subscribers if mode == "tuned" else min(args.subscribers, 5000)
    subprocess.run([sys.executable, "-m", "bench.baselines", mode, "--redis", redis_url, "--prefix", prefix,
                    "--key", key_file, "--ca", cert, "--limit", str(limit), "--seconds", str(args.baseline_seconds),
                    "--out", str(out)], check=True, env={**os.environ})
    result = json.loads(out.read_text())
    time.sleep(0.6)
    result["sink_accepted"] = read_stats(stats_path)["accepted"] - before
    result["name"] = {"documented": "pywebpush as documented", "tuned": "pywebpush at its best"}[mode]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baseline-seconds", type=float, default=20)
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="turns Nabaa and tuned pywebpush each take")
    parser.add_argument("--profile", action="store_true", help="record the workers with py-spy (collapsed stacks)")
    parser.add_argument("--profile-native", action="store_true",
                        help="with --profile: C frames too (OpenSSL, uvloop, the kernel's share shows as syscalls)")
    parser.add_argument("--out", default=str(ROOT / "bench-results"))
    args = parser.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nabaa-bench-") as tmp:
        work = Path(tmp)
        cert, cert_key = make_cert(work)
        vapid_key = work / "vapid.pem"
        write_private_key(vapid_key)
        server = EmbeddedRedis(work / "redis", appendonly=True).start()
        stats_path = work / "sink.json"
        sink = subprocess.Popen([sys.executable, "-m", "bench.sink", "--cert", cert, "--key", cert_key,
                                 "--stats-file", str(stats_path)], stdout=subprocess.PIPE, text=True)
        try:
            port = int(sink.stdout.readline().split()[1])
            origin = f"https://localhost:{port}"
            prefix = "bench"
            client = redis.Redis.from_url(server.url)
            memory_before = client.info("memory")["used_memory"]
            started = time.monotonic()
            populate(server.url, prefix, origin, args.subscribers)
            memory_after = client.info("memory")["used_memory"]
            print(f"populated {args.subscribers} subscribers in {time.monotonic() - started:.1f} s; "
                  f"{(memory_after - memory_before) / args.subscribers:.0f} bytes of Redis memory each", flush=True)
            # Nabaa and tuned pywebpush take turns, round after round, so that a machine whose speed drifts
            # (a shared or virtual one) slows both alike; each is reported by its median round.
            rounds: dict[str, list[dict]] = {"nabaa": [], "tuned": [], "documented": []}
            for _ in range(args.rounds):
                rounds["nabaa"].append(run_nabaa(args, work, server.url, prefix, origin, cert, str(vapid_key),
                                                 stats_path, {"push service": sink.pid, "redis": server.process.pid}))
                if not args.skip_baselines:
                    rounds["tuned"].append(run_baseline("tuned", args, server.url, prefix, cert, str(vapid_key),
                                                        work, stats_path))
            if not args.skip_baselines:  # far slower: one round says enough
                rounds["documented"].append(run_baseline("documented", args, server.url, prefix, cert,
                                                         str(vapid_key), work, stats_path))
            results = [median_round(runs) for runs in rounds.values() if runs]
            final_stats = read_stats(stats_path)
        finally:
            sink.terminate()
            sink.wait(10)
            server.stop()
    report = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "subscribers": args.subscribers, "workers": args.workers,
        "redis_bytes_per_subscriber": (memory_after - memory_before) / args.subscribers,
        "sink_rejected_total": final_stats.get("rejected", 0), "sink_reasons": final_stats.get("reasons", {}),
        "rounds": args.rounds, "results": results, "all_rounds": rounds,
    }
    print_table(report)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    (out_dir / f"bench-{args.subscribers}-{stamp}.json").write_text(json.dumps(report, indent=2))
    (out_dir / "latest.json").write_text(json.dumps(report, indent=2))
    plot(report, out_dir / f"bench-{args.subscribers}-{stamp}.png")
    print(f"results in {out_dir}/")


def median_round(runs: list[dict]) -> dict:
    """The round with the median rate (the lower middle one of an even count), with every round's rate."""
    ordered = sorted(runs, key=lambda r: r["rate"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["round_rates"] = [round(r["rate"]) for r in runs]
    chosen["round_per_cpu_s"] = [round(r["per_cpu_s"]) for r in runs]
    return chosen


def print_table(report: dict) -> None:
    results = report["results"]
    nabaa = results[0]
    print(f"\n{report['subscribers']} subscribers, {report['workers']} workers, {report['machine']['cpus']} CPUs, "
          f"TLS to a local push service that verifies every request")
    documented = " (pywebpush as documented: one round, its first 5,000 at most)" if len(results) > 1 else ""
    print(f"each sender's median round of {report['rounds']}{documented}")
    print(f"{'sender':32} {'sent':>8} {'wall s':>8} {'msg/s':>9} {'msg/CPU-s':>10} {'peak MB':>8}  rounds: msg/s")
    for r in results:
        print(f"{r['name']:32} {r['sent']:>8} {r['wall_s']:>8.2f} {r['rate']:>9.0f} {r['per_cpu_s']:>10.0f} "
              f"{r['peak_rss_mb']:>8.1f}  {' '.join(str(rate) for rate in r['round_rates'])}")
    others = ", ".join(f"{name} {cpu:.2f} s" for name, cpu in nabaa.get("others_cpu_s", {}).items())
    print(f"\nCPU during the broadcast ({report['machine']['cpus']} × {nabaa['wall_s']:.2f} s on hand): workers "
          f"{nabaa['cpu_s']:.2f} s, {others}")
    print(f"first push after the 202: {nabaa['first_push_ms']:.0f} ms; API answered in {nabaa['api_202_ms']:.0f} ms; "
          f"{nabaa['connections']} TLS connections opened")
    print(f"Redis memory per subscriber: {report['redis_bytes_per_subscriber']:.0f} bytes")
    print(f"push service rejected: {report['sink_rejected_total']} {report['sink_reasons'] or ''}")
    for r in results[1:]:
        print(f"nabaa / {r['name']}: {nabaa['rate'] / r['rate'] if r['rate'] else 0:.1f}× the rate, "
              f"{nabaa['per_cpu_s'] / r['per_cpu_s'] if r['per_cpu_s'] else 0:.2f}× the messages per CPU-second")


def plot(report: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot)")
        return
    nabaa = report["results"][0]
    series = nabaa.get("per_tenth") or []
    start = nabaa["broadcast_start"]
    # Per tenth of a second, as a rate per second; the tenth the 202 fell in counts from the 202.
    points = [(tenth / 10 - start, count * 10) for tenth, count in series if (tenth + 1) / 10 > start]
    points = [(max(x, 0.0), y) for x, y in points if x <= nabaa["wall_s"] + 1]
    fig, ax = plt.subplots(figsize=(8, 4))
    if points:
        ax.plot([x for x, _ in points], [y for _, y in points], marker=".", label=nabaa["name"])
    for r, color in zip(report["results"][1:], ("tab:orange", "tab:red")):
        ax.axhline(r["rate"], linestyle="--", color=color, label=f"{r['name']} (its rate)")
    ax.set_xlabel("seconds after the 202")
    ax.set_ylabel("notifications accepted per second")
    ax.set_title(f"Broadcast to {report['subscribers']} subscribers over TLS")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
