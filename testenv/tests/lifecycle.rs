//! The control plane starts, restarts and, above all, always stops: also when a test
//! panics and when the process that owns it is killed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dataforest_testenv::{Assets, ControlPlane, ControllerManager, locate_kube_controller_manager};

/// Processes whose command line names `folder`: the control plane's etcd and apiserver.
fn processes_using(folder: &Path) -> Vec<String> {
    let output = Command::new("pgrep")
        .args(["-af", &folder.display().to_string()])
        .output()
        .expect("pgrep runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.contains("pgrep"))
        .map(str::to_owned)
        .collect()
}

/// Waits until `check` holds, polling; the kernel delivers signals asynchronously.
fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start() -> ControlPlane {
    let _ = rustls::crypto::ring::default_provider().install_default();
    ControlPlane::start(Assets::locate().expect("assets")).expect("control plane starts")
}

#[test]
fn dropping_a_control_plane_stops_its_processes_and_deletes_its_folder() {
    let plane = start();
    let folder = plane.dir().to_owned();
    assert!(plane.is_running());
    assert_eq!(
        processes_using(&folder).len(),
        2,
        "etcd and kube-apiserver run"
    );
    drop(plane);
    assert!(
        processes_using(&folder).is_empty(),
        "left: {:?}",
        processes_using(&folder)
    );
    assert!(!folder.exists(), "{} still exists", folder.display());
}

#[test]
fn a_test_that_panics_leaves_no_process_behind() {
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let plane = start();
        tx.send(plane.dir().to_owned()).unwrap();
        panic!("a failing test");
    })
    .join();
    assert!(outcome.is_err());
    let folder = rx.recv().unwrap();
    assert!(
        processes_using(&folder).is_empty(),
        "left: {:?}",
        processes_using(&folder)
    );
    assert!(!folder.exists());
}

#[test]
fn killing_the_process_that_owns_the_control_plane_kills_etcd_and_the_apiserver() {
    let out = tempfile::tempdir().unwrap();
    let kubeconfig = out.path().join("kubeconfig");
    let mut owner = Command::new(env!("CARGO_BIN_EXE_testenv"))
        .arg("--kubeconfig-out")
        .arg(&kubeconfig)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the control plane is ready", || kubeconfig.exists());
    let server = std::fs::read_to_string(&kubeconfig).unwrap();
    let port = server
        .lines()
        .find_map(|line| line.trim().strip_prefix("server: https://127.0.0.1:"))
        .expect("the kubeconfig names the server")
        .to_owned();
    let apiserver = format!("secure-port={port}");
    assert_eq!(processes_using(Path::new(&apiserver)).len(), 1);

    owner.kill().unwrap(); // SIGKILL: no handler, no destructor runs
    owner.wait().unwrap();
    wait_until("kube-apiserver is gone", || {
        processes_using(Path::new(&apiserver)).is_empty()
    });
}

/// The program a process runs, from `/proc/<pid>/comm`.
fn program_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|comm| comm.trim().to_owned())
        .unwrap_or_default()
}

#[test]
fn the_pids_name_the_running_apiserver_and_etcd_and_none_once_stopped() {
    let plane = start();
    let pids = plane.pids();
    let apiserver = pids.kube_apiserver.expect("kube-apiserver has a pid");
    assert_eq!(program_of(apiserver), "kube-apiserver");
    assert_eq!(program_of(pids.etcd.expect("etcd has a pid")), "etcd");

    plane.stop_apiserver().unwrap();
    assert_eq!(
        plane.pids().kube_apiserver,
        None,
        "a stopped apiserver has no pid"
    );
    plane.start_apiserver().unwrap();
    let restarted = plane
        .pids()
        .kube_apiserver
        .expect("the restarted apiserver has a pid");
    assert_ne!(restarted, apiserver);
    assert_eq!(program_of(restarted), "kube-apiserver");
}

#[test]
fn the_apiserver_restarts_on_the_same_port_and_keeps_its_data() {
    use k8s_openapi::api::core::v1::Namespace;
    let plane = start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "kept"}})).unwrap();
        let namespaces = kube::Api::<Namespace>::all(plane.client().await.unwrap());
        namespaces.create(&Default::default(), &ns).await.unwrap();
    });
    let url = plane.server_url().to_owned();

    plane.stop_apiserver().unwrap();
    assert!(!plane.is_running());
    plane.start_apiserver().unwrap();

    assert!(plane.is_running());
    assert_eq!(plane.server_url(), url);
    runtime.block_on(async {
        let namespaces = kube::Api::<Namespace>::all(plane.client().await.unwrap());
        let kept = namespaces.get("kept").await;
        assert!(kept.is_ok(), "the namespace survived the restart: {kept:?}");
    });
}

#[test]
fn a_port_taken_before_etcd_binds_it_is_replaced_and_the_start_succeeds() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Another process holds this port, as an outgoing connection can take a port between
    // the moment it was picked as free and etcd binding it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let taken_port = taken.local_addr().expect("an address").port();
    let mut picked = Vec::new();
    let mut ports = || {
        let port = if picked.is_empty() {
            taken_port
        } else {
            dataforest_testenv::free_port()?
        };
        picked.push(port);
        Ok(port)
    };
    let plane = ControlPlane::start_on(Assets::locate().expect("assets"), &mut ports)
        .expect("the start is tried again on other ports");
    assert!(
        !plane.server_url().ends_with(&format!(":{taken_port}")),
        "{}",
        plane.server_url()
    );
    drop(plane);
    assert!(
        picked.len() > 3,
        "the first start's ports were replaced: picked {picked:?}"
    );
    assert_eq!(picked[0], taken_port);
    drop(taken);
}

fn start_controller_manager(plane: &ControlPlane) -> ControllerManager {
    let program = locate_kube_controller_manager().expect("kube-controller-manager");
    ControllerManager::start(
        &program,
        plane.kubeconfig_path(),
        &["clusterrole-aggregation"],
    )
    .expect("kube-controller-manager starts")
}

#[test]
fn dropping_a_controller_manager_stops_it_and_deletes_its_folder() {
    let plane = start();
    let manager = start_controller_manager(&plane);
    let folder = manager.dir().to_owned();
    assert!(manager.is_running());
    assert_eq!(
        processes_using(&folder).len(),
        1,
        "kube-controller-manager runs"
    );
    drop(manager);
    assert!(
        processes_using(&folder).is_empty(),
        "left: {:?}",
        processes_using(&folder)
    );
    assert!(!folder.exists(), "{} still exists", folder.display());
    assert!(plane.is_running(), "the control plane is not its to stop");
}

#[test]
fn a_test_that_panics_leaves_no_controller_manager_behind() {
    let plane = start();
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let manager = start_controller_manager(&plane);
                tx.send(manager.dir().to_owned()).unwrap();
                panic!("a failing test");
            })
            .join()
    });
    assert!(outcome.is_err());
    let folder = rx.recv().unwrap();
    assert!(
        processes_using(&folder).is_empty(),
        "left: {:?}",
        processes_using(&folder)
    );
    assert!(!folder.exists());
}

#[test]
fn a_controller_manager_needs_its_controllers_named() {
    let error = ControllerManager::start(Path::new("/nonexistent"), Path::new("/nonexistent"), &[])
        .err()
        .expect("refused");
    assert!(
        format!("{error}").contains("name the controllers"),
        "{error}"
    );
}
