//! The deployment files keep the walls the threat model relies on: every container runs as UID
//! 1000 with `runAsNonRoot`, a read-only root filesystem, no privilege escalation and no
//! capabilities, with `/tmp` on an emptyDir; one image name everywhere, the one the Containerfile
//! labels; no Secret value committed; on PostgreSQL the database URL comes only from its Secret.
//!
//! Every YAML file under `deploy/` is read as it is, and each overlay is rendered with
//! `kubectl kustomize` (kubectl's built-in kustomize), because a patch can undo what a base file
//! promises. Without kubectl the rendering tests print `SKIPPED: <test> needs kubectl …` and pass,
//! except with `CI=true`, where they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns panic on purpose

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

/// The UID the Containerfile creates and every manifest runs as.
const UID: u64 = 1000;
const GRPC_PORT: u64 = 50055;
const METRICS_PORT: u64 = 9464;
const DATABASE_URL: &str = "ORCHESTRATOR_DATABASE_URL";
/// Kinds whose objects carry a pod template, and where it sits.
const WORKLOADS: &[(&str, &str)] = &[
    ("Deployment", "/spec/template/spec"),
    ("StatefulSet", "/spec/template/spec"),
    ("DaemonSet", "/spec/template/spec"),
    ("ReplicaSet", "/spec/template/spec"),
    ("Job", "/spec/template/spec"),
    ("CronJob", "/spec/jobTemplate/spec/template/spec"),
    ("Pod", "/spec"),
];

// ---- reading the files ------------------------------------------------------------------------

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the repository").to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of a (multi-document) YAML text, empty documents left out.
fn parse_yaml(origin: &str, text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{origin}: invalid YAML: {e}")))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// One YAML file under `deploy/`.
struct Manifest {
    /// Relative to the repository root, for messages.
    name: String,
    path: PathBuf,
    docs: Vec<Value>,
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml") {
            out.push(path);
        }
    }
}

fn deploy_manifests() -> Vec<Manifest> {
    let root = repo_root();
    let mut paths = Vec::new();
    yaml_files(&root.join("deploy"), &mut paths);
    paths
        .into_iter()
        .map(|path| {
            let name = path.strip_prefix(&root).unwrap().display().to_string();
            let docs = parse_yaml(&name, &read(&path));
            Manifest { name, path, docs }
        })
        .collect()
}

fn is_kustomization(doc: &Value) -> bool {
    matches!(doc["kind"].as_str(), Some("Kustomization" | "Component"))
}

/// Every file a kustomization loads (resources, components, patches, generator inputs), as
/// canonical paths.
fn files_loaded_by_kustomizations(manifests: &[Manifest]) -> BTreeSet<PathBuf> {
    let mut loaded = BTreeSet::new();
    for manifest in manifests {
        let dir = manifest.path.parent().unwrap();
        for doc in manifest.docs.iter().filter(|doc| is_kustomization(doc)) {
            let mut names: Vec<&str> = Vec::new();
            for key in ["resources", "components", "patchesStrategicMerge"] {
                names.extend(doc[key].as_array().into_iter().flatten().filter_map(Value::as_str));
            }
            names.extend(doc["patches"].as_array().into_iter().flatten().filter_map(|p| p["path"].as_str()));
            for generator in ["configMapGenerator", "secretGenerator"] {
                for entry in doc[generator].as_array().into_iter().flatten() {
                    for key in ["files", "envs"] {
                        names.extend(
                            entry[key]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(Value::as_str)
                                .map(|f| f.rsplit_once('=').map_or(f, |(_, file)| file)),
                        );
                    }
                }
            }
            loaded.extend(names.into_iter().filter_map(|name| dir.join(name).canonicalize().ok()));
        }
    }
    loaded
}

/// Files kustomize merges into other objects: partial on purpose, so not held to the full walls.
fn patch_files(manifests: &[Manifest]) -> BTreeSet<PathBuf> {
    let mut patches = BTreeSet::new();
    for manifest in manifests {
        let dir = manifest.path.parent().unwrap();
        for doc in manifest.docs.iter().filter(|doc| is_kustomization(doc)) {
            let named = doc["patches"].as_array().into_iter().flatten().filter_map(|p| p["path"].as_str());
            let strategic =
                doc["patchesStrategicMerge"].as_array().into_iter().flatten().filter_map(Value::as_str);
            patches.extend(named.chain(strategic).filter_map(|name| dir.join(name).canonicalize().ok()));
        }
    }
    patches
}

// ---- the Containerfile ------------------------------------------------------------------------

/// The Containerfile's instructions: comments dropped, continuation lines joined.
fn containerfile_instructions() -> Vec<String> {
    let text = read(&repo_root().join("Containerfile"));
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() && current.is_empty() {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    instructions
}

/// The instructions of the last stage (the image that ships).
fn runtime_stage() -> Vec<String> {
    let instructions = containerfile_instructions();
    let last_from = instructions.iter().rposition(|i| i.starts_with("FROM ")).expect("a FROM instruction");
    instructions[last_from..].to_vec()
}

/// The value of a `LABEL key="value"` of the image.
fn label(key: &str) -> String {
    let needle = format!("{key}=\"");
    runtime_stage()
        .iter()
        .filter(|i| i.starts_with("LABEL "))
        .find_map(|i| i.split_once(&needle).map(|(_, rest)| rest.split('"').next().unwrap_or("").to_owned()))
        .unwrap_or_else(|| panic!("Containerfile: no LABEL {key}"))
}

/// The image every manifest must run: the Containerfile's `org.opencontainers.image.ref.name`.
fn image() -> String {
    label("org.opencontainers.image.ref.name")
}

fn workspace_version() -> String {
    let manifest: toml::Table = toml::from_str(&read(&repo_root().join("Cargo.toml"))).unwrap();
    manifest["workspace"]["package"]["version"].as_str().unwrap().to_owned()
}

// ---- rendering --------------------------------------------------------------------------------

/// `kubectl kustomize <dir>`: the objects an overlay applies. `None` (after a visible SKIPPED
/// line) when kubectl is not installed, which fails under `CI=true`.
fn kustomize(dir: &Path) -> Option<Vec<Value>> {
    match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            orchestrator_test_support::skip(
                "kubectl",
                "install kubectl",
                format!("not installed, cannot render {}", dir.display()),
            );
            None
        }
        Err(e) => panic!("kubectl kustomize {}: {e}", dir.display()),
        Ok(out) => {
            assert!(
                out.status.success(),
                "kubectl kustomize {} failed: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            Some(parse_yaml(&format!("kustomize {}", dir.display()), &String::from_utf8(out.stdout).unwrap()))
        }
    }
}

fn render_overlay(name: &str) -> Option<Vec<Value>> {
    kustomize(&repo_root().join("deploy/k8s/overlays").join(name))
}

/// An overlay plus components, composed in a temporary kustomization the way an operator would
/// (kustomize refuses absolute paths, so the paths go up to `/` and back down).
fn render_with_components(overlay: &str, components: &[&str]) -> Option<Vec<Value>> {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().canonicalize().unwrap();
    let k8s = repo_root().join("deploy/k8s").canonicalize().unwrap();
    let up = "../".repeat(tmp.components().count() - 1);
    let path = |rel: &str| format!("{up}{}/{rel}", k8s.strip_prefix("/").unwrap().display());
    let mut text = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {}\ncomponents:\n",
        path(&format!("overlays/{overlay}"))
    );
    for component in components {
        text.push_str(&format!("  - {}\n", path(&format!("components/{component}"))));
    }
    std::fs::write(tmp.join("kustomization.yaml"), text).unwrap();
    kustomize(&tmp)
}

// ---- the walls --------------------------------------------------------------------------------

/// Which seccomp profiles a container may name: the pod's is RuntimeDefault in every case.
#[derive(Clone, Copy, PartialEq)]
enum Seccomp {
    RuntimeDefaultOnly,
    /// The sandbox component: bwrap needs namespaces the runtime's default profile refuses.
    UnconfinedContainerAllowed,
}

fn pod_specs(objects: &[Value]) -> Vec<(String, &Value)> {
    objects
        .iter()
        .filter_map(|object| {
            let kind = object["kind"].as_str()?;
            let (_, pointer) = WORKLOADS.iter().find(|(k, _)| *k == kind)?;
            let name = format!("{kind}/{}", object["metadata"]["name"].as_str().unwrap_or("?"));
            let spec = object.pointer(pointer).unwrap_or_else(|| panic!("{name}: no pod spec at {pointer}"));
            Some((name, spec))
        })
        .collect()
}

fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(move |key| pod[key].as_array().into_iter().flatten())
}

fn volume<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no volume named {name}"))
}

/// The volume mounted at `path` in `container`, if any.
fn volume_at<'a>(pod: &'a Value, container: &Value, path: &str) -> Option<&'a Value> {
    let mount =
        container["volumeMounts"].as_array().into_iter().flatten().find(|m| m["mountPath"] == path)?;
    Some(volume(pod, mount["name"].as_str().unwrap()))
}

fn env<'a>(container: &'a Value, name: &str) -> Vec<&'a Value> {
    container["env"].as_array().into_iter().flatten().filter(|e| e["name"] == name).collect()
}

/// The walls of one pod spec and each of its containers; `origin` names it in failures.
fn assert_pod_walls(origin: &str, pod: &Value, seccomp: Seccomp) {
    let pod_sc = &pod["securityContext"];
    assert_eq!(pod_sc["seccompProfile"]["type"], "RuntimeDefault", "{origin}: pod seccompProfile");
    assert_eq!(pod["automountServiceAccountToken"], false, "{origin}: automountServiceAccountToken");
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        assert_ne!(pod[host], true, "{origin}: {host}");
    }
    let mut seen = 0;
    for container in containers(pod) {
        seen += 1;
        let at = format!("{origin} container {}", container["name"]);
        let sc = &container["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{at}: securityContext.runAsNonRoot");
        let uid = if sc["runAsUser"].is_null() { &pod_sc["runAsUser"] } else { &sc["runAsUser"] };
        assert_eq!(uid.as_u64(), Some(UID), "{at}: runAsUser");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{at}: securityContext.allowPrivilegeEscalation");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{at}: securityContext.readOnlyRootFilesystem");
        assert_ne!(sc["privileged"], true, "{at}: securityContext.privileged");
        let drop = sc["capabilities"]["drop"].as_array().cloned().unwrap_or_default();
        assert!(drop.iter().any(|c| c == "ALL"), "{at}: capabilities.drop must hold ALL, got {drop:?}");
        let add = sc["capabilities"]["add"].as_array().cloned().unwrap_or_default();
        assert!(add.is_empty(), "{at}: capabilities.add must be empty, got {add:?}");
        match (sc["seccompProfile"]["type"].as_str(), seccomp) {
            (None | Some("RuntimeDefault"), _)
            | (Some("Unconfined"), Seccomp::UnconfinedContainerAllowed) => {}
            (Some(other), _) => panic!("{at}: seccompProfile {other} is not allowed here"),
        }
        let tmp =
            volume_at(pod, container, "/tmp").unwrap_or_else(|| panic!("{at}: nothing mounted at /tmp"));
        assert!(tmp["emptyDir"].is_object(), "{at}: /tmp must be an emptyDir, got {tmp}");
    }
    assert!(seen > 0, "{origin}: no containers");
}

fn images(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("image", Value::String(image)) => out.push(image.clone()),
                    _ => images(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| images(v, out)),
        _ => {}
    }
}

/// Whether a ConfigMap could hand the server a database URL: as a variable, as a TOML key, or
/// as a literal URL anywhere in its data.
fn configmap_database_url(configmap: &Value) -> Option<String> {
    let data = configmap["data"].as_object()?;
    data.iter().find_map(|(key, value)| {
        let text = value.as_str().unwrap_or("");
        let toml_key = key.ends_with(".toml")
            && toml::from_str::<toml::Table>(text)
                .unwrap_or_else(|e| panic!("ConfigMap key {key}: invalid TOML: {e}"))
                .contains_key("database_url");
        let leaked = key == DATABASE_URL
            || toml_key
            || text.contains(&format!("{DATABASE_URL}="))
            || text.contains("postgres://")
            || text.contains("postgresql://");
        leaked.then(|| key.clone())
    })
}

/// What holds for every rendered overlay, whatever its database.
fn assert_rendered_walls(origin: &str, objects: &[Value], seccomp: Seccomp) {
    let pods = pod_specs(objects);
    assert_eq!(pods.len(), 1, "{origin}: exactly one workload expected, got {:?}", pods.iter().map(|p| &p.0));
    for (name, pod) in &pods {
        assert_pod_walls(&format!("{origin} {name}"), pod, seccomp);
    }
    let mut all_images = Vec::new();
    images(&Value::Array(objects.to_vec()), &mut all_images);
    assert!(!all_images.is_empty(), "{origin}: no image");
    for found in all_images {
        assert_eq!(found, image(), "{origin}: image differs from the Containerfile's label");
    }
    for object in objects {
        let kind = object["kind"].as_str().unwrap_or("");
        let name = object["metadata"]["name"].as_str().unwrap_or("?");
        assert_ne!(kind, "Secret", "{origin}: renders Secret/{name}: Secrets are created out of band");
        if kind == "ServiceAccount" {
            assert_eq!(object["automountServiceAccountToken"], false, "{origin}: ServiceAccount/{name}");
        }
        if kind == "ConfigMap" {
            assert_eq!(
                configmap_database_url(object),
                None,
                "{origin}: ConfigMap/{name} sets a database URL"
            );
        }
    }

    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").expect("a Deployment");
    let template = &deployment["spec"]["template"];
    let pod = &template["spec"];
    let server = &pod["containers"][0];
    let listen = env(server, "ORCHESTRATOR_LISTEN");
    assert_eq!(listen.len(), 1, "{origin}: ORCHESTRATOR_LISTEN set once");
    assert_eq!(listen[0]["value"], format!("0.0.0.0:{GRPC_PORT}"), "{origin}: ORCHESTRATOR_LISTEN");
    assert_eq!(
        env(server, "ORCHESTRATOR_METRICS_LISTEN").first().map(|e| &e["value"]),
        Some(&Value::from(format!("0.0.0.0:{METRICS_PORT}"))),
        "{origin}: ORCHESTRATOR_METRICS_LISTEN"
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        assert!(server[probe].is_object(), "{origin}: {probe} missing");
    }
    let annotations = &template["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true", "{origin}: scrape annotation");
    assert_eq!(annotations["prometheus.io/port"], METRICS_PORT.to_string(), "{origin}: scrape port");

    // Clients authenticate with tokens read from a Secret volume, never from the image or env.
    assert_eq!(env(server, "ORCHESTRATOR_AUTH").first().map(|e| &e["value"]), Some(&Value::from("token")));
    let tokens_file = env(server, "ORCHESTRATOR_AUTH_TOKENS_FILE")
        .first()
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("{origin}: ORCHESTRATOR_AUTH_TOKENS_FILE"))
        .to_owned();
    let tokens_dir = Path::new(&tokens_file).parent().unwrap().to_str().unwrap();
    let tokens =
        volume_at(pod, server, tokens_dir).unwrap_or_else(|| panic!("{origin}: nothing at {tokens_dir}"));
    assert!(tokens["secret"].is_object(), "{origin}: the tokens file must come from a Secret, got {tokens}");

    let ports: BTreeSet<(String, u64)> = server["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| (p["name"].as_str().unwrap_or("").to_owned(), p["containerPort"].as_u64().unwrap_or(0)))
        .collect();
    let expected: BTreeSet<(String, u64)> =
        [("grpc".to_owned(), GRPC_PORT), ("metrics".to_owned(), METRICS_PORT)].into();
    assert_eq!(ports, expected, "{origin}: container ports");
    let service = objects.iter().find(|o| o["kind"] == "Service").expect("a Service");
    let service_ports: BTreeSet<u64> =
        service["spec"]["ports"].as_array().unwrap().iter().filter_map(|p| p["port"].as_u64()).collect();
    assert_eq!(service_ports, [GRPC_PORT, METRICS_PORT].into(), "{origin}: Service ports");

    let policy = objects.iter().find(|o| o["kind"] == "NetworkPolicy").expect("a NetworkPolicy");
    let selector = policy["spec"]["podSelector"]["matchLabels"].as_object().expect("podSelector.matchLabels");
    assert!(!selector.is_empty(), "{origin}: the NetworkPolicy must select the orchestrator pods only");
    for (key, value) in selector {
        assert_eq!(&template["metadata"]["labels"][key], value, "{origin}: NetworkPolicy selects {key}");
    }
    let types = policy["spec"]["policyTypes"].as_array().cloned().unwrap_or_default();
    assert!(types.contains(&"Ingress".into()) && types.contains(&"Egress".into()), "{origin}: policyTypes");
    let ingress = policy["spec"]["ingress"].as_array().expect("ingress rules");
    for rule in ingress {
        let from = rule["from"].as_array().cloned().unwrap_or_default();
        assert!(!from.is_empty(), "{origin}: an ingress rule open to every source: {rule}");
        let rule_ports: Vec<u64> =
            rule["ports"].as_array().into_iter().flatten().filter_map(|p| p["port"].as_u64()).collect();
        assert!(
            !rule_ports.is_empty() && rule_ports.iter().all(|p| [GRPC_PORT, METRICS_PORT].contains(p)),
            "{origin}: ingress only on the gRPC and metrics ports, got {rule}"
        );
    }
    assert!(egress_ports(policy).contains(&53), "{origin}: egress to DNS");
}

fn egress_ports(policy: &Value) -> BTreeSet<u64> {
    policy["spec"]["egress"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|rule| rule["ports"].as_array().into_iter().flatten())
        .filter_map(|p| p["port"].as_u64())
        .collect()
}

/// On PostgreSQL the database URL comes only from the orchestrator-database Secret: one env
/// entry, a secretKeyRef, no literal, no ConfigMap (checked for every overlay) and no flag.
fn assert_database_url_only_from_its_secret(origin: &str, objects: &[Value]) {
    for (name, pod) in pod_specs(objects) {
        for container in containers(pod) {
            let at = format!("{origin} {name} container {}", container["name"]);
            let entries = env(container, DATABASE_URL);
            assert_eq!(entries.len(), 1, "{at}: {DATABASE_URL} must be set exactly once, got {entries:?}");
            let entry = entries[0];
            assert!(entry.get("value").is_none(), "{at}: {DATABASE_URL} has a literal value: {entry}");
            let secret = &entry["valueFrom"]["secretKeyRef"];
            assert_eq!(secret["name"], "orchestrator-database", "{at}: {DATABASE_URL} secretKeyRef.name");
            assert_eq!(secret["key"], "url", "{at}: {DATABASE_URL} secretKeyRef.key");
            assert_ne!(secret["optional"], true, "{at}: the database Secret must not be optional");
            let words: Vec<&str> = ["command", "args"]
                .iter()
                .flat_map(|k| container[*k].as_array().into_iter().flatten())
                .filter_map(Value::as_str)
                .collect();
            assert!(
                !words.iter().any(|w| w.contains("database") || w.contains("postgres")),
                "{at}: the command line names a database: {words:?}"
            );
        }
    }
    let configmaps = objects.iter().filter(|o| o["kind"] == "ConfigMap");
    for configmap in configmaps {
        assert_eq!(configmap_database_url(configmap), None, "{origin}: ConfigMap sets a database URL");
    }
}

// ---- tests: the files as written --------------------------------------------------------------

#[test]
fn every_yaml_file_under_deploy_parses_into_kubernetes_objects() {
    let manifests = deploy_manifests();
    assert!(
        manifests.len() >= 10,
        "expected the base, two overlays and two components, got {}",
        manifests.len()
    );
    for manifest in &manifests {
        assert!(!manifest.docs.is_empty(), "{}: no document", manifest.name);
        for doc in &manifest.docs {
            assert!(doc["apiVersion"].is_string(), "{}: a document without apiVersion", manifest.name);
            assert!(doc["kind"].is_string(), "{}: a document without kind", manifest.name);
        }
    }
}

#[test]
fn the_image_is_one_name_everywhere_and_the_containerfile_labels_it() {
    let image = image();
    let (repository, tag) = image.rsplit_once(':').expect("the label names a tag");
    assert_eq!(tag, workspace_version(), "the image tag follows the workspace version");
    assert_eq!(label("org.opencontainers.image.version"), tag, "version label");
    assert!(
        read(&repo_root().join("Containerfile")).contains(&format!("-t {image} ")),
        "the Containerfile's build command tags {image}"
    );

    let mut found = 0;
    for manifest in deploy_manifests() {
        let mut in_file = Vec::new();
        images(&Value::Array(manifest.docs.clone()), &mut in_file);
        for name in in_file {
            found += 1;
            assert_eq!(name, image, "{}: image", manifest.name);
        }
        for doc in manifest.docs.iter().filter(|doc| is_kustomization(doc)) {
            for rewrite in doc["images"].as_array().into_iter().flatten() {
                assert_eq!(
                    rewrite["newName"].as_str().unwrap_or(repository),
                    repository,
                    "{}",
                    manifest.name
                );
                assert_eq!(
                    rewrite["newTag"].as_str().unwrap_or(tag),
                    tag,
                    "{}: images.newTag",
                    manifest.name
                );
            }
        }
    }
    assert!(found > 0, "no image named under deploy/");

    let compose = compose();
    assert_eq!(compose["services"]["orchestrator"]["image"], image, "compose.yaml orchestrator image");
}

#[test]
fn no_secret_value_is_committed_under_deploy() {
    let manifests = deploy_manifests();
    let loaded = files_loaded_by_kustomizations(&manifests);
    let mut examples = 0;
    for manifest in &manifests {
        let is_example = manifest.name.ends_with(".example.yaml");
        for doc in &manifest.docs {
            if doc["kind"] == "Secret" {
                assert!(is_example, "{}: a Secret outside a *.example.yaml file", manifest.name);
                examples += 1;
                for (key, value) in doc["stringData"].as_object().into_iter().flatten() {
                    assert!(
                        value.as_str().is_some_and(|v| v.contains('<')),
                        "{}: example value of {key} must be a <placeholder>",
                        manifest.name
                    );
                }
                assert!(
                    doc["data"].is_null(),
                    "{}: example Secrets show stringData placeholders only",
                    manifest.name
                );
            }
            for generator in doc["secretGenerator"].as_array().into_iter().flatten() {
                assert!(generator["literals"].is_null(), "{}: secretGenerator literals", manifest.name);
            }
        }
        if is_example {
            let path = manifest.path.canonicalize().unwrap();
            assert!(
                !loaded.contains(&path),
                "{}: an example must not be loaded by a kustomization",
                manifest.name
            );
        }
    }
    assert!(examples > 0, "the Secret shapes are documented by *.example.yaml files");
    // A secretGenerator may only read files that git ignores: the operator creates them.
    for (manifest, file) in secret_generator_files(&manifests) {
        let ignored = Command::new("git")
            .arg("-C")
            .arg(repo_root())
            .args(["check-ignore", "-q"])
            .arg(&file)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ignored, "{manifest}: secretGenerator reads {}, which git does not ignore", file.display());
    }
}

/// The files secretGenerators read, with the kustomization naming each.
fn secret_generator_files(manifests: &[Manifest]) -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    for manifest in manifests {
        let dir = manifest.path.parent().unwrap();
        for generator in
            manifest.docs.iter().flat_map(|d| d["secretGenerator"].as_array().into_iter().flatten())
        {
            for key in ["files", "envs"] {
                for entry in generator[key].as_array().into_iter().flatten().filter_map(Value::as_str) {
                    let file = entry.rsplit_once('=').map_or(entry, |(_, file)| file);
                    files.push((manifest.name.clone(), dir.join(file)));
                }
            }
        }
    }
    files
}

#[test]
fn workloads_as_written_keep_every_container_wall() {
    let manifests = deploy_manifests();
    let patches = patch_files(&manifests);
    let mut checked = 0;
    for manifest in manifests.iter().filter(|m| !patches.contains(&m.path.canonicalize().unwrap())) {
        for (name, pod) in pod_specs(&manifest.docs) {
            assert_pod_walls(&format!("{} {name}", manifest.name), pod, Seccomp::RuntimeDefaultOnly);
            checked += 1;
        }
    }
    assert!(checked > 0, "no workload found under deploy/");
}

/// What a kustomization directory hands kustomize, transitively through its resources and
/// components: every YAML document (files and inline patches), and every generated ConfigMap
/// or Secret as an object with the `data` it would get. Read before kustomize merges anything,
/// because a strategic-merge patch that repeats an env name is silently deduplicated.
fn kustomize_inputs(dir: &Path, out: &mut Vec<(String, Value)>) {
    let root = repo_root();
    let name = |path: &Path| path.strip_prefix(&root).unwrap_or(path).display().to_string();
    let kustomization = dir.join("kustomization.yaml");
    let origin = name(&kustomization);
    let docs = parse_yaml(&origin, &read(&kustomization));
    for doc in &docs {
        let listed = ["resources", "components", "patchesStrategicMerge"]
            .iter()
            .flat_map(|key| doc[*key].as_array().into_iter().flatten())
            .chain(doc["patches"].as_array().into_iter().flatten().map(|p| &p["path"]))
            .filter_map(Value::as_str);
        for entry in listed {
            let path = dir.join(entry);
            if path.is_dir() {
                kustomize_inputs(&path, out);
            } else {
                let file = name(&path);
                out.extend(parse_yaml(&file, &read(&path)).into_iter().map(|d| (file.clone(), d)));
            }
        }
        for inline in doc["patches"].as_array().into_iter().flatten().filter_map(|p| p["patch"].as_str()) {
            out.extend(parse_yaml(&origin, inline).into_iter().map(|d| (origin.clone(), d)));
        }
        for generator in ["configMapGenerator", "secretGenerator"] {
            for entry in doc[generator].as_array().into_iter().flatten() {
                let mut data = serde_json::Map::new();
                for literal in entry["literals"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                    let (key, value) = literal.split_once('=').unwrap_or((literal, ""));
                    data.insert(key.to_owned(), value.into());
                }
                for key in ["files", "envs"] {
                    for file in entry[key].as_array().into_iter().flatten().filter_map(Value::as_str) {
                        let (key, file) = file.rsplit_once('=').unwrap_or((file, file));
                        let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
                        data.insert(key.to_owned(), text.into());
                    }
                }
                out.push((origin.clone(), serde_json::json!({ "kind": "ConfigMap", "data": data })));
            }
        }
    }
}

/// Every object under `value` that names `name` (env entries, generated keys).
fn named<'a>(value: &'a Value, name: &str, out: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => {
            if map.get("name").is_some_and(|n| n == name) {
                out.push(value);
            }
            map.values().for_each(|v| named(v, name, out));
        }
        Value::Array(items) => items.iter().for_each(|v| named(v, name, out)),
        _ => {}
    }
}

// ---- tests: what each overlay applies ---------------------------------------------------------

#[test]
fn sqlite_overlay_renders_one_replica_recreated_on_a_volume_with_every_wall() {
    let Some(objects) = render_overlay("sqlite") else { return };
    assert_rendered_walls("overlays/sqlite", &objects, Seccomp::RuntimeDefaultOnly);
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 1, "SQLite has one writer");
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate", "old and new pod must not overlap");
    let pod = &deployment["spec"]["template"]["spec"];
    let server = &pod["containers"][0];
    let url = env(server, DATABASE_URL);
    assert_eq!(url.len(), 1, "{DATABASE_URL} set once");
    assert!(url[0]["value"].as_str().is_some_and(|v| v.starts_with("sqlite:/data/")), "{}", url[0]);
    let data = volume_at(pod, server, "/data").expect("/data mounted");
    let claim =
        data["persistentVolumeClaim"]["claimName"].as_str().expect("/data on a PersistentVolumeClaim");
    assert!(
        objects.iter().any(|o| o["kind"] == "PersistentVolumeClaim" && o["metadata"]["name"] == claim),
        "the claim {claim} is part of the overlay"
    );
}

#[test]
fn postgres_overlay_takes_the_database_url_only_from_its_secret() {
    let Some(objects) = render_overlay("postgres") else { return };
    assert_database_url_only_from_its_secret("overlays/postgres", &objects);
}

#[test]
fn postgres_overlay_sources_name_the_database_url_only_as_a_secret_reference() {
    // The overlay, and the components an operator may add to it.
    let k8s = repo_root().join("deploy/k8s");
    let mut inputs = Vec::new();
    kustomize_inputs(&k8s.join("overlays/postgres"), &mut inputs);
    for component in std::fs::read_dir(k8s.join("components")).unwrap() {
        kustomize_inputs(&component.unwrap().path(), &mut inputs);
    }
    let mut references = 0;
    for (origin, doc) in &inputs {
        if doc["kind"] == "ConfigMap" {
            assert_eq!(configmap_database_url(doc), None, "{origin}: a ConfigMap sets the database URL");
        }
        let mut entries = Vec::new();
        named(doc, DATABASE_URL, &mut entries);
        for entry in entries {
            assert!(entry.get("value").is_none(), "{origin}: {DATABASE_URL} has a literal value: {entry}");
            let secret = &entry["valueFrom"]["secretKeyRef"];
            assert_eq!(secret["name"], "orchestrator-database", "{origin}: {DATABASE_URL} from {entry}");
            assert_eq!(secret["key"], "url", "{origin}: {DATABASE_URL} from {entry}");
            references += 1;
        }
    }
    assert_eq!(references, 1, "{DATABASE_URL} is named once, by the overlay's secretKeyRef");
}

#[test]
fn postgres_overlay_renders_several_replicas_named_by_pod_with_every_wall() {
    let Some(objects) = render_overlay("postgres") else { return };
    assert_rendered_walls("overlays/postgres", &objects, Seccomp::RuntimeDefaultOnly);
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert!(deployment["spec"]["replicas"].as_u64().is_some_and(|n| n >= 2), "several replicas");
    let server = &deployment["spec"]["template"]["spec"]["containers"][0];
    let node_id = env(server, "ORCHESTRATOR_NODE_ID");
    assert_eq!(node_id.len(), 1);
    assert_eq!(node_id[0]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name", "node id is the pod name");
    assert!(
        !objects.iter().any(|o| o["kind"] == "PersistentVolumeClaim"),
        "replicas share PostgreSQL, not a volume"
    );
    let policy = objects.iter().find(|o| o["kind"] == "NetworkPolicy").unwrap();
    assert!(egress_ports(policy).contains(&5432), "egress to PostgreSQL");
}

#[test]
fn tls_and_sandbox_components_change_only_what_they_must() {
    let Some(objects) = render_with_components("postgres", &["tls", "sandbox"]) else { return };
    let origin = "overlays/postgres + components/tls + components/sandbox";
    assert_rendered_walls(origin, &objects, Seccomp::UnconfinedContainerAllowed);
    assert_database_url_only_from_its_secret(origin, &objects);
    let pod = &objects.iter().find(|o| o["kind"] == "Deployment").unwrap()["spec"]["template"]["spec"];
    let server = &pod["containers"][0];
    for variable in ["ORCHESTRATOR_TLS_CERT", "ORCHESTRATOR_TLS_KEY", "ORCHESTRATOR_TLS_CLIENT_CA"] {
        let file = env(server, variable)
            .first()
            .and_then(|e| e["value"].as_str())
            .unwrap_or_else(|| panic!("{variable}"));
        let dir = Path::new(file).parent().unwrap().to_str().unwrap();
        let source =
            volume_at(pod, server, dir).unwrap_or_else(|| panic!("{variable}: nothing mounted at {dir}"));
        assert!(source["secret"].is_object(), "{variable}: read from a Secret volume, got {source}");
    }
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert!(server[probe]["grpc"].is_null(), "{probe}: the kubelet's gRPC probe cannot speak TLS");
    }
}

// ---- tests: the image and compose -------------------------------------------------------------

#[test]
fn the_containerfile_builds_a_non_root_image_with_the_sandbox_tools_and_a_health_check() {
    let stages = containerfile_instructions().iter().filter(|i| i.starts_with("FROM ")).count();
    assert!(stages >= 2, "multi-stage: the toolchain stays out of the image");
    let runtime = runtime_stage();
    let find = |prefix: &str| -> Vec<&String> { runtime.iter().filter(|i| i.starts_with(prefix)).collect() };
    let user = find("USER ");
    assert_eq!(user.last().map(|u| u.as_str()), Some("USER 1000:1000"), "runs as UID 1000");
    let installs = find("RUN ").into_iter().find(|r| r.contains("apt-get install")).expect("apt-get install");
    for package in ["bubblewrap", "python3", "ca-certificates"] {
        assert!(installs.split_whitespace().any(|w| w == package), "the image installs {package}");
    }
    assert!(
        find("ENV ")
            .iter()
            .any(|e| e.split_whitespace().any(|w| w == format!("ORCHESTRATOR_LISTEN=0.0.0.0:{GRPC_PORT}"))),
        "the container listens on every interface"
    );
    let health = find("HEALTHCHECK ");
    assert_eq!(health.len(), 1, "one HEALTHCHECK");
    assert!(health[0].ends_with(r#"CMD ["orchestrator", "health"]"#), "{}", health[0]);
    let exposed: BTreeSet<String> =
        find("EXPOSE ").iter().flat_map(|e| e.split_whitespace().skip(1).map(str::to_owned)).collect();
    assert_eq!(exposed, [GRPC_PORT.to_string(), METRICS_PORT.to_string()].into(), "EXPOSE");
    assert_eq!(find("VOLUME "), [r#"VOLUME ["/data"]"#], "SQLite lives on the /data volume");
}

#[test]
fn the_build_context_leaves_out_build_output_local_data_and_secrets() {
    let ignore = read(&repo_root().join(".containerignore"));
    let patterns: BTreeSet<&str> =
        ignore.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    for pattern in ["target", "**/target", "data", "**/*.db", ".git", ".env", ".env.*", "**/*.env"] {
        assert!(patterns.contains(pattern), ".containerignore must exclude {pattern}");
    }
    let reincluded: Vec<_> = patterns.iter().filter(|p| p.starts_with('!')).collect();
    assert!(reincluded.is_empty(), ".containerignore re-includes {reincluded:?}");
}

fn compose() -> Value {
    let docs = parse_yaml("compose.yaml", &read(&repo_root().join("compose.yaml")));
    assert_eq!(docs.len(), 1, "compose.yaml is one document");
    docs.into_iter().next().unwrap()
}

/// A compose service's environment, in either the map or the `KEY=value` list form.
fn compose_env(service: &Value, name: &str) -> Option<String> {
    match &service["environment"] {
        Value::Object(map) => map.get(name).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .find_map(|item| item.strip_prefix(name)?.strip_prefix('=').map(str::to_owned)),
        _ => None,
    }
}

#[test]
fn compose_runs_the_orchestrator_listening_on_all_interfaces_with_healthchecks_and_no_literal_secret() {
    let compose = compose();
    let services = compose["services"].as_object().expect("services");
    for name in ["orchestrator", "postgres", "nats", "llm"] {
        assert!(services.contains_key(name), "compose.yaml has a {name} service");
    }
    for (name, service) in services {
        assert!(service["healthcheck"]["test"].is_array(), "compose service {name} has a healthcheck");
    }
    let orchestrator = &services["orchestrator"];
    assert_eq!(compose_env(orchestrator, "ORCHESTRATOR_LISTEN").as_deref(), Some("0.0.0.0:50055"));
    assert_eq!(orchestrator["healthcheck"]["test"], serde_json::json!(["CMD", "orchestrator", "health"]));
    for dependency in ["postgres", "nats"] {
        assert_eq!(orchestrator["depends_on"][dependency]["condition"], "service_healthy", "{dependency}");
    }
    assert_eq!(orchestrator["user"], "1000:1000");
    assert_eq!(orchestrator["read_only"], true, "read-only root filesystem");
    assert!(orchestrator["cap_drop"].as_array().is_some_and(|c| c.contains(&"ALL".into())), "cap_drop ALL");
    for port in orchestrator["ports"].as_array().expect("ports") {
        assert!(
            port.as_str().is_some_and(|p| p.starts_with("127.0.0.1:")),
            "published on loopback only: {port}"
        );
    }
    // Passwords come from the caller's environment, never from the file.
    let url = compose_env(orchestrator, DATABASE_URL).expect("database URL");
    assert!(url.starts_with("postgres://orchestrator:${POSTGRES_PASSWORD"), "{url}");
    let password = compose_env(&services["postgres"], "POSTGRES_PASSWORD").expect("POSTGRES_PASSWORD");
    assert!(password.starts_with("${POSTGRES_PASSWORD"), "{password}");
    assert!(compose_env(orchestrator, "ORCHESTRATOR_AUTH_TOKENS_FILE").is_some(), "token auth configured");
}
