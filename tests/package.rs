//! The Debian packages as `scripts/package` builds them (`scripts/test` runs
//! it before the tests): what they hold, their control data and conffiles,
//! what their maintainer scripts do on install, upgrade, remove and purge,
//! and the binary run from a throwaway root (the arm64 one under qemu-user).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The package for `arch`; the hint says how to build it.
fn deb(arch: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/debian")
        .join(format!("simmask_{VERSION}-1_{arch}.deb"));
    assert!(
        path.exists(),
        "{} is missing: build it with `scripts/package` (scripts/test does)",
        path.display()
    );
    path
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(command: &mut Command) -> String {
    String::from_utf8(run(command).stdout).expect("UTF-8")
}

fn field(deb: &Path, name: &str) -> String {
    stdout(Command::new("dpkg-deb").arg("--field").arg(deb).arg(name))
        .trim()
        .to_string()
}

/// `dpkg-deb -c`: (mode, path) of every entry.
fn contents(deb: &Path) -> Vec<(String, String)> {
    stdout(Command::new("dpkg-deb").arg("--contents").arg(deb))
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (
                fields[0].to_string(),
                fields[5].trim_start_matches('.').to_string(),
            )
        })
        .collect()
}

/// The control archive (maintainer scripts, conffiles) unpacked.
fn control(deb: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("--control")
        .arg(deb)
        .arg(dir.path()));
    dir
}

fn check_package(arch: &str) {
    let deb = deb(arch);
    assert_eq!(field(&deb, "Package"), "simmask");
    assert_eq!(field(&deb, "Architecture"), arch);
    assert_eq!(field(&deb, "Version"), format!("{VERSION}-1"));
    let depends = field(&deb, "Depends");
    assert!(depends.contains("libc6"), "{depends}");
    assert!(depends.contains("adduser"), "{depends}");

    let files = contents(&deb);
    let mode = |path: &str| {
        files
            .iter()
            .find(|(_, p)| p == path)
            .map(|(mode, _)| mode.clone())
            .unwrap_or_else(|| panic!("{path} is not in the {arch} package: {files:#?}"))
    };
    assert_eq!(mode("/usr/bin/simmask"), "-rwxr-xr-x");
    assert_eq!(mode("/lib/systemd/system/simmask.service"), "-rw-r--r--");
    assert_eq!(mode("/lib/udev/rules.d/99-simmask.rules"), "-rw-r--r--");
    assert_eq!(
        mode("/etc/simmask/simmask.toml"),
        "-rw-r-----",
        "the configuration may hold PINs"
    );
    for doc in [
        "README.md",
        "hardware.md",
        "copyright",
        "examples/clock.conf",
    ] {
        mode(&format!("/usr/share/doc/simmask/{doc}"));
    }
    for profile in
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-config")).unwrap()
    {
        let name = profile.unwrap().file_name();
        mode(&format!(
            "/usr/share/simmask/firmware-config/{}",
            name.to_string_lossy()
        ));
    }
    for (_, path) in &files {
        assert!(
            ["/etc/", "/lib/", "/usr/"]
                .iter()
                .any(|root| path.starts_with(root))
                || path == "/",
            "{path}: outside the package's places"
        );
    }

    // dpkg-deb -I names the scripts and the conffile; only the config is one.
    let info = stdout(Command::new("dpkg-deb").arg("--info").arg(&deb));
    for member in ["control", "conffiles", "postinst", "prerm", "postrm"] {
        assert!(info.contains(member), "{member} missing from:\n{info}");
    }
    let control = control(&deb);
    let conffiles = std::fs::read_to_string(control.path().join("conffiles")).unwrap();
    assert_eq!(
        conffiles.lines().collect::<Vec<_>>(),
        ["/etc/simmask/simmask.toml"]
    );
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.path().join(script);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o755
        );
        run(Command::new("sh").arg("-n").arg(&path));
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            assert!(
                !line.contains(" enable") && !line.contains(" start "),
                "{script} must not enable or start the service: {line}"
            );
        }
    }

    // The binary is stripped: no symbol table, no debug sections.
    let root = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(root.path()));
    let binary = root.path().join("usr/bin/simmask");
    let sections = stdout(Command::new("readelf").arg("-S").arg("-W").arg(&binary));
    assert!(!sections.contains(".symtab"), "not stripped");
    assert!(!sections.contains(".debug_"), "debug sections shipped");
    let size = std::fs::metadata(&binary).unwrap().len();
    assert!(
        size < 40 << 20,
        "the {arch} binary is {size} bytes: is it stripped?"
    );

    // The unit as installed: the packaged binary, and systemd accepts it.
    let unit =
        std::fs::read_to_string(root.path().join("lib/systemd/system/simmask.service")).unwrap();
    assert!(unit.contains("\nExecStart=/usr/bin/simmask run "), "{unit}");
}

#[test]
fn the_amd64_package_holds_the_appliance() {
    check_package("amd64");
}

#[test]
fn the_arm64_package_holds_the_appliance() {
    check_package("arm64");
}

/// Installs the package into an empty root with dpkg (unpacked, its
/// conffile registered) and runs the binary from there.
fn install_and_run(arch: &str, runner: &[&str]) {
    let deb = deb(arch);
    let root = tempfile::tempdir().unwrap();
    for dir in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
    ] {
        std::fs::create_dir_all(root.path().join(dir)).unwrap();
    }
    std::fs::write(root.path().join("var/lib/dpkg/status"), "").unwrap();
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.path().display()))
        .args(["--force-depends", "--force-architecture", "--unpack"])
        .arg(&deb));
    let status = std::fs::read_to_string(root.path().join("var/lib/dpkg/status")).unwrap();
    assert!(status.contains("Package: simmask"), "{status}");
    assert!(
        status.contains("Conffiles:\n /etc/simmask/simmask.toml "),
        "the configuration is registered as a conffile: {status}"
    );

    let binary = root.path().join("usr/bin/simmask");
    let (program, args) = runner.split_first().map_or(
        (binary.as_os_str().to_owned(), Vec::new()),
        |(program, args)| {
            let mut args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
            args.push(binary.clone().into());
            ((*program).into(), args)
        },
    );
    let version = stdout(Command::new(program).args(args).arg("--version"));
    assert_eq!(version.trim(), format!("simmask {VERSION}"));
}

#[test]
fn the_amd64_package_installs_into_a_throwaway_root_and_runs() {
    install_and_run("amd64", &[]);
}

#[test]
fn the_arm64_package_installs_into_a_throwaway_root_and_runs_under_qemu() {
    install_and_run("arm64", &["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"]);
}

/// A root for the maintainer scripts (they prefix every path with
/// `$DPKG_ROOT`, as dpkg sets it for `--root` installs) and stub commands
/// that log their arguments instead of changing this machine's users,
/// udev or systemd.
struct ScriptBench {
    root: tempfile::TempDir,
    stubs: tempfile::TempDir,
    control: tempfile::TempDir,
}

impl ScriptBench {
    /// `user_exists`: getent finds `simmask`; `groups`: what `id -nG` says.
    fn new(user_exists: bool, groups: &str) -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("run/systemd/system")).unwrap();
        std::fs::create_dir_all(root.path().join("run/udev")).unwrap();
        std::fs::create_dir_all(root.path().join("etc/simmask")).unwrap();
        std::fs::write(root.path().join("etc/simmask/simmask.toml"), "").unwrap();
        // udevadm is only asked when udev runs: its control socket exists.
        let socket =
            std::os::unix::net::UnixListener::bind(root.path().join("run/udev/control")).unwrap();
        std::mem::forget(socket);
        let stubs = tempfile::tempdir().unwrap();
        let log = stubs.path().join("log");
        for (name, body) in [
            ("getent", if user_exists { "exit 0" } else { "exit 2" }),
            ("id", &*format!("echo '{groups}'")),
            ("stat", "echo root"),
            ("adduser", ""),
            ("install", ""),
            ("chgrp", ""),
            ("chmod", ""),
            ("udevadm", ""),
            ("systemctl", ""),
            ("deb-systemd-helper", ""),
        ] {
            let path = stubs.path().join(name);
            std::fs::write(
                &path,
                format!(
                    "#!/bin/sh\necho \"{name} $*\" >> '{}'\n{body}\n",
                    log.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let control = control(&deb("amd64"));
        ScriptBench {
            root,
            stubs,
            control,
        }
    }

    /// Runs `script args`; returns the stubs' log, one command a line.
    fn run(&self, script: &str, args: &[&str]) -> Vec<String> {
        let _ = std::fs::remove_file(self.stubs.path().join("log"));
        run(Command::new("sh")
            .arg(self.control.path().join(script))
            .args(args)
            .env("DPKG_ROOT", self.root.path())
            .env(
                "PATH",
                format!(
                    "{}:/usr/sbin:/usr/bin:/sbin:/bin",
                    self.stubs.path().display()
                ),
            ));
        std::fs::read_to_string(self.stubs.path().join("log"))
            .unwrap_or_default()
            .lines()
            .map(|line| line.replace(&self.root.path().display().to_string(), "$ROOT"))
            .collect()
    }
}

#[test]
fn a_first_install_creates_the_user_in_dialout_and_starts_nothing() {
    let bench = ScriptBench::new(false, "simmask");
    let calls = bench.run("postinst", &["configure", ""]);
    let expected = [
        "getent passwd simmask",
        "adduser --system --group --home /var/lib/simmask --no-create-home --gecos simmask number-masking appliance simmask",
        "id -nG simmask",
        "adduser --quiet simmask dialout",
        "install -d -o simmask -g simmask -m 0750 $ROOT/var/lib/simmask",
        "stat -c %G $ROOT/etc/simmask/simmask.toml",
        "chgrp simmask $ROOT/etc/simmask/simmask.toml",
        "chmod 0640 $ROOT/etc/simmask/simmask.toml",
        "udevadm control --reload-rules",
        "udevadm trigger --subsystem-match=tty --subsystem-match=usb --action=change",
        "systemctl daemon-reload",
    ];
    assert_eq!(calls, expected);
}

#[test]
fn an_upgrade_restarts_only_a_running_service_and_keeps_the_user() {
    let bench = ScriptBench::new(true, "simmask dialout");
    std::fs::create_dir_all(bench.root.path().join("var/lib/simmask")).unwrap();
    let calls = bench.run("postinst", &["configure", "0.0.9-1"]);
    assert!(calls.iter().all(|c| !c.starts_with("adduser")), "{calls:?}");
    assert!(calls.iter().all(|c| !c.starts_with("install")), "{calls:?}");
    assert!(
        calls.contains(&"systemctl try-restart simmask.service".to_string()),
        "{calls:?}"
    );
    assert!(
        calls
            .iter()
            .filter(|c| c.starts_with("systemctl"))
            .all(|c| c == "systemctl daemon-reload" || c == "systemctl try-restart simmask.service"),
        "{calls:?}"
    );
}

#[test]
fn remove_keeps_the_state_and_purge_deletes_it() {
    let bench = ScriptBench::new(true, "simmask dialout");
    let state = bench.root.path().join("var/lib/simmask");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("simmask.db"), "sessions").unwrap();

    assert_eq!(
        bench.run("prerm", &["remove"]),
        ["systemctl stop simmask.service"]
    );
    assert_eq!(
        bench.run("postrm", &["remove"]),
        ["udevadm control --reload-rules", "systemctl daemon-reload"]
    );
    assert!(
        state.join("simmask.db").exists(),
        "remove keeps the database"
    );
    assert!(
        bench.run("prerm", &["upgrade", "0.2.0-1"]).is_empty(),
        "an upgrade does not stop the service"
    );
    assert!(bench.run("postrm", &["upgrade", "0.2.0-1"]).is_empty());
    assert!(state.exists());

    assert_eq!(
        bench.run("postrm", &["purge"]),
        ["deb-systemd-helper purge simmask.service"]
    );
    assert!(!state.exists(), "purge deletes the state");
}
