//! The Kubernetes manifests (`deploy/kubernetes/`) and `deploy/Dockerfile`,
//! parsed and held to the invariants that keep one SQLite appliance safe:
//! one replica on a ReadWriteOnce volume holding the data directory, the
//! ConfigMap's `config.toml` accepted by the real `energyload config check`,
//! probes on the port the config listens on, credentials from a read-only
//! Secret named by the `_file` keys, a locked-down container, resources that
//! fit the measured memory, a grace period above the shutdown timeout, and
//! an image that is the static binary alone running as a non-root user.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use energyload::config::Config;
use yaml_rust2::{Yaml, YamlLoader};

use crate::common::process::bin;

const MANIFESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes");
const DOCKERFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/Dockerfile");
/// argon2 memory of one hash at the original service's parameters (MiB).
const LEGACY_HASH_MIB: u64 = 100;
/// Measured idle RSS (BENCHMARKS.md), rounded up (MiB).
const IDLE_MIB: u64 = 20;
/// Database bytes per stored delivered 4-datapoint message, measured
/// (BENCHMARKS.md "Data growth: bytes per message"), rounded up.
const MEASURED_BYTES_PER_MESSAGE: u64 = 420;
/// The README's small utility: 10,000 meters, one message per 15 minutes.
const SMALL_UTILITY_MESSAGES_PER_DAY: u64 = 10_000 * 96;

/// Every manifest document, applied (`*.yaml`) or example (`*.yaml.example`).
fn manifests() -> Vec<Yaml> {
    let mut docs = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(MANIFESTS).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.ends_with(".yaml") || name.ends_with(".yaml.example"), "unexpected file {name}");
        let text = std::fs::read_to_string(&file).unwrap();
        let parsed = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        for doc in parsed {
            for field in ["apiVersion", "kind"] {
                assert!(doc[field].as_str().is_some(), "{name}: no {field}");
            }
            assert!(doc["metadata"]["name"].as_str().is_some(), "{name}: no metadata.name");
            docs.push(doc);
        }
    }
    docs
}

/// The one document of `kind`.
fn the<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    let found: Vec<&Yaml> = docs.iter().filter(|d| d["kind"].as_str() == Some(kind)).collect();
    assert_eq!(found.len(), 1, "exactly one {kind}");
    found[0]
}

fn list(y: &Yaml) -> &[Yaml] {
    y.as_vec().map(Vec::as_slice).unwrap_or(&[])
}

fn strings(y: &Yaml) -> Vec<&str> {
    list(y).iter().map(|s| s.as_str().expect("a string")).collect()
}

/// The item of a list whose `name` is `name`.
fn named<'a>(items: &'a Yaml, name: &str) -> &'a Yaml {
    list(items).iter().find(|i| i["name"].as_str() == Some(name)).unwrap_or_else(|| panic!("no {name}"))
}

/// The Secret called `name`.
fn secret_named<'a>(docs: &'a [Yaml], name: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some("Secret") && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no Secret {name}"))
}

/// A memory quantity such as `128Mi` or `1Gi`, in MiB.
fn mebibytes(q: &Yaml) -> u64 {
    let q = q.as_str().expect("a quantity string");
    let (n, unit) = q.split_at(q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len()));
    let n: u64 = n.parse().unwrap();
    match unit {
        "Mi" => n,
        "Gi" => n * 1024,
        other => panic!("memory unit {other} in {q}"),
    }
}

/// A probe's or Service's port: a number, or a container port's name.
fn port_number(port: &Yaml, container: &Yaml) -> i64 {
    match (port.as_i64(), port.as_str()) {
        (Some(n), _) => n,
        (None, Some(name)) => named(&container["ports"], name)["containerPort"].as_i64().unwrap(),
        _ => panic!("port {port:?}"),
    }
}

/// The ConfigMap's `config.toml`, with the Secret's mount point replaced by
/// `dir` holding the Secret's keys as files, checked by the real binary.
fn checked_config(config_text: &str, secret_mount: &str, secret_keys: &[&str], dir: &Path) -> Config {
    let secrets = dir.join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    for key in secret_keys {
        std::fs::write(secrets.join(key), format!("test-{key}\n")).unwrap();
    }
    let file = dir.join("config.toml");
    let local = config_text.replace(&format!("{secret_mount}/"), &format!("{}/", secrets.display()));
    std::fs::write(&file, local).unwrap();
    let out =
        Command::new(bin()).args(["config", "check", "--config"]).arg(&file).env_clear().output().unwrap();
    assert!(out.status.success(), "config check: {}", String::from_utf8_lossy(&out.stderr));
    energyload::config::load(Some(&file), Vec::new()).unwrap().config
}

#[test]
fn the_manifests_run_one_locked_down_pod_with_its_volume_config_and_secret() {
    let docs = manifests();
    let set = the(&docs, "StatefulSet");
    assert!(docs.iter().all(|d| d["kind"].as_str() != Some("Deployment")), "one workload");
    assert_eq!(set["spec"]["replicas"].as_i64(), Some(1), "one replica: SQLite has one writer");
    let pod = &set["spec"]["template"]["spec"];
    let containers = list(&pod["containers"]);
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let mounts = &container["volumeMounts"];

    // The Secret: mounted read-only, its keys the files the config names.
    let secret = secret_named(&docs, "energyload-esight");
    let secret_name = secret["metadata"]["name"].as_str().unwrap();
    let secret_volume = list(&pod["volumes"])
        .iter()
        .find(|v| v["secret"]["secretName"].as_str() == Some(secret_name))
        .expect("the Secret is a volume");
    let secret_mount = named(mounts, secret_volume["name"].as_str().unwrap());
    assert_eq!(secret_mount["readOnly"].as_bool(), Some(true), "the Secret is mounted read-only");
    let secret_dir = secret_mount["mountPath"].as_str().unwrap();
    let mode = secret_volume["secret"]["defaultMode"].as_i64().expect("defaultMode");
    assert_eq!(mode & 0o007, 0, "secret files are not world-readable: {mode:o}");
    let secret_keys: Vec<&str> =
        secret["stringData"].as_hash().expect("stringData").keys().map(|k| k.as_str().unwrap()).collect();

    // The config: from the ConfigMap mounted where `serve --config` reads it.
    let map = the(&docs, "ConfigMap");
    let config_text = map["data"]["config.toml"].as_str().expect("config.toml in the ConfigMap");
    let config_volume = list(&pod["volumes"])
        .iter()
        .find(|v| v["configMap"]["name"].as_str() == map["metadata"]["name"].as_str())
        .expect("the ConfigMap is a volume");
    let config_mount = named(mounts, config_volume["name"].as_str().unwrap());
    assert_eq!(config_mount["readOnly"].as_bool(), Some(true));
    let config_path = format!("{}/config.toml", config_mount["mountPath"].as_str().unwrap());
    let mut argv = strings(&container["command"]);
    argv.extend(strings(&container["args"]));
    assert_eq!(argv, ["/usr/local/bin/energyload", "serve", "--config", config_path.as_str()]);

    let dir = tempfile::tempdir().unwrap();
    let config = checked_config(config_text, secret_dir, &secret_keys, dir.path());
    let raw: toml::Table = config_text.parse().unwrap();
    let file_keys: Vec<(&String, &str)> = raw["esight"]
        .as_table()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.ends_with("_file"))
        .map(|(k, v)| (k, v.as_str().unwrap()))
        .collect();
    assert_eq!(file_keys.len(), 4, "all four eSight credentials come from files: {file_keys:?}");
    let mut used = BTreeSet::new();
    for (key, path) in file_keys {
        let name = path.strip_prefix(&format!("{secret_dir}/")).unwrap_or_else(|| panic!("{key}: {path}"));
        assert!(secret_keys.contains(&name), "{key} names {name}, a key of the Secret");
        used.insert(name);
    }
    assert_eq!(used.len(), secret_keys.len(), "every Secret key is used once");

    // The data directory inside the ReadWriteOnce claim's mount (not its
    // root, which the process cannot chmod to 0700).
    let claims = list(&set["spec"]["volumeClaimTemplates"]);
    assert_eq!(claims.len(), 1);
    assert_eq!(strings(&claims[0]["spec"]["accessModes"]), ["ReadWriteOnce"]);
    let data_mount = named(mounts, claims[0]["metadata"]["name"].as_str().unwrap());
    let data_root = Path::new(data_mount["mountPath"].as_str().unwrap());
    assert!(
        config.storage.data_dir.starts_with(data_root) && config.storage.data_dir != data_root,
        "storage.data_dir {:?} inside the volume at {data_root:?}",
        config.storage.data_dir
    );
    // The volume holds the default retention of the README's small utility
    // (10,000 meters, 15-minute readings) at the measured bytes per message,
    // above the free-space floor (README "Capacity", BENCHMARKS.md "Data growth").
    let volume = &claims[0]["spec"]["resources"]["requests"]["storage"];
    let volume_bytes = mebibytes(volume) * 1024 * 1024;
    let messages = SMALL_UTILITY_MESSAGES_PER_DAY * u64::from(config.retention.delivered_days);
    let needed = messages * MEASURED_BYTES_PER_MESSAGE + config.storage.min_free_bytes;
    assert!(
        volume_bytes >= needed,
        "{volume:?} holds {} days of the small utility, retention keeps {}",
        (volume_bytes - config.storage.min_free_bytes)
            / (SMALL_UTILITY_MESSAGES_PER_DAY * MEASURED_BYTES_PER_MESSAGE),
        config.retention.delivered_days
    );
    // Read-only root: log files, if any, must land on a volume.
    assert!(!config.log.files || config.log_dir().starts_with(data_root), "log.dir on a writable volume");

    // Port and probes: what the config listens on.
    assert!(
        config.server.listen.ip().is_unspecified(),
        "listen on all addresses, for probes and the Service"
    );
    let port = i64::from(config.server.listen.port());
    assert_eq!(named(&container["ports"], "http")["containerPort"].as_i64(), Some(port));
    for (probe, path) in
        [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")]
    {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert_eq!(port_number(&get["port"], container), port, "{probe}");
    }
    let service = the(&docs, "Service");
    let service_port = &list(&service["spec"]["ports"])[0];
    assert_eq!(port_number(&service_port["targetPort"], container), port);
    let labels = &set["spec"]["template"]["metadata"]["labels"];
    for (k, v) in service["spec"]["selector"].as_hash().unwrap() {
        assert_eq!(&labels[k.as_str().unwrap()], v, "the Service selects the pod");
    }

    // Locked down.
    let (pod_sc, sc) = (&pod["securityContext"], &container["securityContext"]);
    assert_eq!(sc["runAsNonRoot"].as_bool().or(pod_sc["runAsNonRoot"].as_bool()), Some(true));
    assert!(pod_sc["runAsUser"].as_i64().is_some_and(|u| u > 0));
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    assert!(sc["capabilities"]["add"].is_badvalue(), "no capability added");
    let seccomp = sc["seccompProfile"]["type"].as_str().or(pod_sc["seccompProfile"]["type"].as_str());
    assert_eq!(seccomp, Some("RuntimeDefault"));

    // Memory that fits the measured peak: idle plus a bounded hashing pool.
    let resources = &container["resources"];
    assert!(resources["requests"]["cpu"].as_str().is_some(), "a CPU request");
    let (request, limit) =
        (mebibytes(&resources["requests"]["memory"]), mebibytes(&resources["limits"]["memory"]));
    let slots = u64::try_from(config.auth.password_hash_concurrency).unwrap();
    assert!(slots > 0, "the hashing pool is sized in the config, not by the node's core count");
    assert!(request >= IDLE_MIB && request <= limit, "requests {request} Mi, limit {limit} Mi");
    let peak = IDLE_MIB + slots * LEGACY_HASH_MIB;
    assert!(peak * 5 / 4 <= limit, "limit {limit} Mi leaves under 25% above the hashing peak {peak} Mi");

    let grace = pod["terminationGracePeriodSeconds"].as_i64().expect("terminationGracePeriodSeconds");
    let shutdown = i64::try_from(config.server.shutdown_timeout.get().as_secs()).unwrap();
    assert!(grace > shutdown, "grace {grace}s must exceed server.shutdown_timeout {shutdown}s");
}

/// The instructions of a Dockerfile, continuation lines joined.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || (line.is_empty() && pending.is_empty()) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        let full = std::mem::take(&mut pending) + line;
        let (op, rest) = full.split_once(' ').unwrap_or((&full, ""));
        out.push((op.to_ascii_uppercase(), rest.trim().to_string()));
    }
    out
}

#[test]
fn the_image_is_the_static_binary_alone_run_as_a_non_root_user() {
    let all = instructions(&std::fs::read_to_string(DOCKERFILE).unwrap());
    let last_from = all.iter().rposition(|(op, _)| op == "FROM").expect("FROM");
    assert_eq!(all[last_from].1, "scratch", "the final stage is FROM scratch");
    assert!(
        all[..last_from].iter().any(|(op, args)| op == "RUN" && args.contains("cargo build --release")),
        "the build stage runs cargo build --release (crt-static target from .cargo/config.toml)"
    );
    let last = &all[last_from..];
    let get = |op: &str| last.iter().rfind(|(o, _)| o == op).map(|(_, a)| a.as_str());
    let exec_form = |op: &str| -> Vec<String> {
        serde_json::from_str(get(op).unwrap_or_else(|| panic!("no {op}"))).expect("exec (JSON) form")
    };
    let user = get("USER").expect("USER");
    let uid = user.split(':').next().unwrap();
    assert!(
        uid.parse::<u32>().is_ok_and(|u| u > 0),
        "a numeric non-root USER (scratch has no passwd): {user}"
    );
    let entrypoint = exec_form("ENTRYPOINT");
    assert_eq!(entrypoint, ["/usr/local/bin/energyload"]);
    let copied = last.iter().any(|(op, args)| op == "COPY" && args.ends_with(" /usr/local/bin/energyload"));
    assert!(copied, "the binary is copied to the ENTRYPOINT path");
    assert_eq!(exec_form("CMD"), ["serve", "--config", "/etc/energyload/config.toml"]);

    // The same user and port as the StatefulSet.
    let docs = manifests();
    let pod = &the(&docs, "StatefulSet")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"].as_i64().map(|u| u.to_string()).as_deref(), Some(uid));
    let port = list(&pod["containers"])[0]["ports"][0]["containerPort"].as_i64().unwrap();
    assert_eq!(get("EXPOSE"), Some(port.to_string().as_str()));
}

#[test]
fn litestream_runs_as_a_locked_down_sidecar_on_the_same_database_and_socket() {
    let docs = manifests();
    let set = the(&docs, "StatefulSet");
    let pod = &set["spec"]["template"]["spec"];
    let app = &list(&pod["containers"])[0];
    let sidecar = named(&pod["initContainers"], "litestream");
    assert_eq!(sidecar["restartPolicy"].as_str(), Some("Always"), "a native sidecar: up before energyload");
    let map = the(&docs, "ConfigMap");
    let yml = map["data"]["litestream.yml"].as_str().expect("litestream.yml in the ConfigMap");
    let ls = &YamlLoader::load_from_str(yml).unwrap()[0];

    // Its config is the ConfigMap's litestream.yml, where it mounts it.
    let config_volume = list(&pod["volumes"])
        .iter()
        .find(|v| v["configMap"]["name"].as_str() == map["metadata"]["name"].as_str())
        .unwrap();
    let config_mount = named(&sidecar["volumeMounts"], config_volume["name"].as_str().unwrap());
    let mut argv = strings(&sidecar["command"]);
    argv.extend(strings(&sidecar["args"]));
    let yml_path = format!("{}/litestream.yml", config_mount["mountPath"].as_str().unwrap());
    assert_eq!(argv, ["/usr/local/bin/litestream", "replicate", "-config", yml_path.as_str()]);

    // The same database: the data volume at the same path in both containers.
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_named(&docs, "energyload-esight");
    let keys: Vec<&str> =
        secret["stringData"].as_hash().unwrap().keys().map(|k| k.as_str().unwrap()).collect();
    let config_text = map["data"]["config.toml"].as_str().unwrap();
    let config = checked_config(config_text, "/run/secrets/esight", &keys, dir.path());
    let claim = list(&set["spec"]["volumeClaimTemplates"])[0]["metadata"]["name"].as_str().unwrap();
    assert_eq!(
        named(&sidecar["volumeMounts"], claim)["mountPath"],
        named(&app["volumeMounts"], claim)["mountPath"]
    );
    let dbs = list(&ls["dbs"]);
    assert_eq!(dbs.len(), 1);
    assert_eq!(Path::new(dbs[0]["path"].as_str().unwrap()), config.storage.data_dir.join("energyload.db"));

    // The control socket: the one [replication] names, on an emptyDir both mount.
    assert_eq!(config.replication.mode, energyload::config::ReplicationMode::Litestream);
    assert_eq!(config.replication.acknowledge, energyload::config::Acknowledge::Replicated);
    let socket = Path::new(ls["socket"]["path"].as_str().unwrap());
    assert_eq!(ls["socket"]["enabled"].as_bool(), Some(true));
    assert_eq!(config.replication.socket.as_deref(), Some(socket));
    let shared = list(&pod["volumes"]).iter().find(|v| {
        !v["emptyDir"].is_badvalue() && {
            let name = v["name"].as_str().unwrap();
            [sidecar, app].iter().all(|c| {
                list(&c["volumeMounts"]).iter().any(|m| {
                    m["name"].as_str() == Some(name)
                        && socket.parent() == Some(Path::new(m["mountPath"].as_str().unwrap()))
                })
            })
        }
    });
    assert!(shared.is_some(), "the socket's directory is an emptyDir mounted in both containers");

    // Credentials from a Secret, as environment variables the config refers to;
    // none written into the ConfigMap.
    let secret_name = list(&sidecar["envFrom"])[0]["secretRef"]["name"].as_str().expect("envFrom a Secret");
    let creds = secret_named(&docs, secret_name);
    let replica = &dbs[0]["replica"];
    for key in ["access-key-id", "secret-access-key"] {
        let value = replica[key].as_str().unwrap();
        let var = value
            .strip_prefix("${")
            .and_then(|v| v.strip_suffix('}'))
            .unwrap_or_else(|| panic!("{key}: {value}"));
        assert!(!creds["stringData"][var].is_badvalue(), "{var} is a key of the Secret {secret_name}");
    }
    // The replica shown to people is the bucket, without credentials.
    let shown = config.replication.replica.as_deref().unwrap();
    assert_eq!(
        shown,
        format!("s3://{}/{}", replica["bucket"].as_str().unwrap(), replica["path"].as_str().unwrap())
    );

    // Locked down like energyload.
    let sc = &sidecar["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(sc["seccompProfile"]["type"].as_str(), Some("RuntimeDefault"));
    assert!(mebibytes(&sidecar["resources"]["limits"]["memory"]) > 0, "a memory limit");
}
