//! The Argo CD health check and actions for AiApps
//! (`deploy/argocd/resource_customizations/dataforest.dev/AiApp/`): their Argo CD-style
//! tests pass on gopher-lua (Argo CD's Lua engine) and Debian's Lua 5.1, the health check
//! degrades exactly the operator's reasons that need a person, and the documents show one
//! and the same health table.
//!
//! The Degraded list has one source, `dataforest_operator::reasons::NEEDS_A_PERSON`: the
//! health check holds a copy between `-- BEGIN NEEDS_A_PERSON` and `-- END NEEDS_A_PERSON`,
//! which `UPDATE_ARGOCD_LUA=1 cargo test --test argocd_lua` rewrites from the Rust list.
//! The same command rewrites `deploy/argocd/argocd-cm-patch.yaml` (the scripts as an
//! argocd-cm patch), which fails the test when it is stale.

use std::path::{Path, PathBuf};
use std::process::Command;

use dataforest_operator::reasons::NEEDS_A_PERSON;

const BEGIN: &str = "-- BEGIN NEEDS_A_PERSON\n";
const END: &str = "-- END NEEDS_A_PERSON\n";
const TABLE_MARK: &str = "<!-- argocd-health-table -->";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn customization() -> PathBuf {
    repo().join("deploy/argocd/resource_customizations/dataforest.dev/AiApp")
}

fn health_lua() -> PathBuf {
    customization().join("health.lua")
}

fn update() -> bool {
    std::env::var("UPDATE_ARGOCD_LUA").is_ok_and(|v| v == "1")
}

const ACTIONS: [&str; 3] = ["suspend", "resume", "resubmit"];

/// `text` as the body of a YAML block scalar indented by `indent` spaces.
fn block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    text.lines()
        .map(|line| {
            if line.is_empty() {
                "\n".to_owned()
            } else {
                format!("{pad}{line}\n")
            }
        })
        .collect()
}

/// The argocd-cm patch made from the scripts.
fn argocd_cm_patch() -> String {
    let dir = customization();
    let mut out = String::from(
        "# The AiApp health check and actions as a patch of Argo CD's argocd-cm ConfigMap\n\
         # (deploy/argocd/README.md). Generated from resource_customizations/dataforest.dev/AiApp/\n\
         # by UPDATE_ARGOCD_LUA=1 cargo test --test argocd_lua; do not edit.\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\ndata:\n\
         \x20 resource.customizations.health.dataforest.dev_AiApp: |\n",
    );
    // health.lua with the block the Rust list makes, as UPDATE_ARGOCD_LUA=1 writes it.
    let lua = read(&health_lua());
    let (before, _, after) = split(&lua);
    out.push_str(&block(&format!("{before}{}{after}", generated_block()), 4));
    out.push_str(
        "  resource.customizations.actions.dataforest.dev_AiApp: |\n    discovery.lua: |\n",
    );
    out.push_str(&block(&read(&dir.join("actions/discovery.lua")), 6));
    out.push_str("    definitions:\n");
    for action in ACTIONS {
        out.push_str(&format!("    - name: {action}\n      action.lua: |\n"));
        out.push_str(&block(
            &read(&dir.join("actions").join(action).join("action.lua")),
            8,
        ));
    }
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The block the Rust list makes.
fn generated_block() -> String {
    let mut block = String::from("local needs_a_person = {\n");
    for reason in NEEDS_A_PERSON {
        block.push_str(&format!("  {reason} = true,\n"));
    }
    block.push_str("}\n");
    block
}

/// (text before the block, the block, text after it).
fn split(lua: &str) -> (&str, &str, &str) {
    let start = lua
        .find(BEGIN)
        .expect("health.lua has no -- BEGIN NEEDS_A_PERSON line")
        + BEGIN.len();
    let end = lua[start..]
        .find(END)
        .expect("health.lua has no -- END NEEDS_A_PERSON line")
        + start;
    (&lua[..start], &lua[start..end], &lua[end..])
}

/// The reason names the Lua table sets to true, in order.
fn lua_reasons(block: &str) -> Vec<String> {
    block
        .lines()
        .filter_map(|line| line.trim().strip_suffix(" = true,"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_health_check_degrades_exactly_the_reasons_that_need_a_person() {
    let path = health_lua();
    let lua = read(&path);
    let (before, block, after) = split(&lua);
    if update() {
        std::fs::write(&path, format!("{before}{}{after}", generated_block())).unwrap();
        return;
    }
    let in_lua = lua_reasons(block);
    let missing: Vec<&&str> = NEEDS_A_PERSON
        .iter()
        .filter(|r| !in_lua.iter().any(|l| l == **r))
        .collect();
    let extra: Vec<&String> = in_lua
        .iter()
        .filter(|l| !NEEDS_A_PERSON.contains(&l.as_str()))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "health.lua's needs_a_person differs from src/reasons.rs: missing {missing:?}, \
         not in the Rust list {extra:?}; run UPDATE_ARGOCD_LUA=1 cargo test --test argocd_lua"
    );
    assert_eq!(
        block,
        generated_block(),
        "health.lua's needs_a_person block is not what src/reasons.rs makes (order or layout); \
         run UPDATE_ARGOCD_LUA=1 cargo test --test argocd_lua"
    );
}

#[test]
fn the_argocd_cm_patch_holds_the_scripts_as_they_are() {
    let path = repo().join("deploy/argocd/argocd-cm-patch.yaml");
    let generated = argocd_cm_patch();
    if update() {
        std::fs::write(&path, &generated).unwrap();
    }
    assert!(
        read(&path) == generated,
        "deploy/argocd/argocd-cm-patch.yaml is stale: run UPDATE_ARGOCD_LUA=1 cargo test --test argocd_lua"
    );
    // What Argo CD reads back from it: each script exactly as its file holds it.
    let patch: serde_yaml_ng::Value = serde_yaml_ng::from_str(&generated).unwrap();
    let data = &patch["data"];
    let health = data["resource.customizations.health.dataforest.dev_AiApp"].as_str();
    assert_eq!(health, Some(read(&health_lua()).as_str()));
    let actions: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        data["resource.customizations.actions.dataforest.dev_AiApp"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let dir = customization().join("actions");
    assert_eq!(
        actions["discovery.lua"].as_str(),
        Some(read(&dir.join("discovery.lua")).as_str())
    );
    let definitions = actions["definitions"].as_sequence().unwrap();
    assert_eq!(definitions.len(), ACTIONS.len());
    for (definition, action) in definitions.iter().zip(ACTIONS) {
        assert_eq!(definition["name"].as_str(), Some(action));
        assert_eq!(
            definition["action.lua"].as_str(),
            Some(read(&dir.join(action).join("action.lua")).as_str())
        );
    }
    // Every action folder is in the patch.
    let mut folders: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("action.lua").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    let mut named: Vec<String> = ACTIONS.iter().map(|a| a.to_string()).collect();
    named.sort();
    assert_eq!(
        folders, named,
        "actions/ has folders the patch does not name"
    );
}

/// The README's install command, `kubectl patch configmap argocd-cm --patch-file`, run
/// locally on an argocd-cm that already holds a setting: both keys land, the setting stays.
#[test]
fn kubectl_patch_installs_the_scripts_into_an_existing_argocd_cm() {
    let kubectl = dataforest_testenv::Assets::locate()
        .expect("kubectl from hack/control-plane-assets.sh")
        .kubectl;
    let dir = std::env::temp_dir().join(format!("argocd-cm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cm = dir.join("argocd-cm.yaml");
    std::fs::write(
        &cm,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\n  namespace: argocd\n\
         data:\n  url: https://argocd.example.com\n",
    )
    .unwrap();
    let out = Command::new(kubectl)
        .args(["patch", "--local", "-o", "json", "-f"])
        .arg(&cm)
        .arg("--patch-file")
        .arg(repo().join("deploy/argocd/argocd-cm-patch.yaml"))
        .output()
        .expect("kubectl runs");
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let patched: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let data = &patched["data"];
    assert_eq!(data["url"], "https://argocd.example.com");
    assert_eq!(
        data["resource.customizations.health.dataforest.dev_AiApp"].as_str(),
        Some(read(&health_lua()).as_str())
    );
    let actions = data["resource.customizations.actions.dataforest.dev_AiApp"]
        .as_str()
        .unwrap();
    assert!(actions.starts_with("discovery.lua: |\n"), "{actions}");
}

#[test]
fn the_reason_parser_sees_a_reason_added_or_removed() {
    let block = generated_block();
    let mut reasons = lua_reasons(&block);
    assert_eq!(reasons, NEEDS_A_PERSON.to_vec());
    let edited = block.replace("  InvalidSpec = true,\n", "  Throttled = true,\n");
    reasons = lua_reasons(&edited);
    assert!(
        reasons.contains(&"Throttled".to_owned()) && !reasons.contains(&"InvalidSpec".to_owned())
    );
}

#[test]
fn the_health_and_action_tests_pass_on_gopher_lua_and_lua_5_1() {
    let out = Command::new("bash")
        .arg(repo().join("hack/test-argocd-health.sh"))
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{all}");
    // Actions run as Argo CD's action tests run them (no open libraries); health and
    // discovery also with every library open, as Argo CD's health tests run them.
    let every = [
        "/testdata/",
        "/discovery ",
        "/suspend ",
        "/resume ",
        "/resubmit ",
    ];
    for (engine, cases) in [
        ("gopher-lua", &every[..]),
        ("lua5.1", &every[..]),
        ("gopher-lua+openlibs", &every[..2]),
    ] {
        for what in cases {
            let prefix = format!("ok   {engine} ");
            assert!(
                stdout
                    .lines()
                    .any(|l| l.starts_with(&prefix) && l.contains(what)),
                "no {what} case passed on {engine}:\n{all}"
            );
        }
    }
    assert!(
        stdout
            .lines()
            .last()
            .is_some_and(|l| l.ends_with(" cases pass")),
        "{all}"
    );
}

/// The table between the two marks in `path`.
fn health_table(path: &Path) -> String {
    let text = read(path);
    let mut parts = text.split(TABLE_MARK);
    let _ = parts.next();
    let table = parts
        .next()
        .unwrap_or_else(|| panic!("{} has no {TABLE_MARK} pair", path.display()));
    assert!(
        parts.next().is_some(),
        "{} has one {TABLE_MARK} only",
        path.display()
    );
    table.trim().to_owned()
}

#[test]
fn the_documents_show_the_same_health_table() {
    let argocd = health_table(&repo().join("deploy/argocd/README.md"));
    let status = health_table(&repo().join("docs/status.md"));
    assert_eq!(
        argocd, status,
        "the Argo CD health tables of deploy/argocd/README.md and docs/status.md differ"
    );
    for phase in [
        "Pending",
        "Submitting",
        "Accepted",
        "Running",
        "Succeeded",
        "Failed",
        "Killed",
        "Unknown",
        "Suspended",
    ] {
        assert!(
            argocd.contains(&format!("`{phase}`")),
            "the table has no row for {phase}"
        );
    }
}
