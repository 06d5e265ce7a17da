//! The C ABI from C: builds `examples/scan.c` and `tests/abi.c` with the system C
//! compiler (`cc`, or `$CC`) against the `libchaff.a` and `libchaff.so` cargo built
//! next to this test, runs them on the bundled corpus with four threads, and checks
//! every verdict against the engine's Rust API. Then runs both under valgrind when
//! it is installed (skipped with a notice when not).

use chaff_engine::{Config, Engine, Envelope, Verdict};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding a fresh `libchaff.a` and `libchaff.so`: `target/<profile>`,
/// the parent of this test's `deps` directory. Nothing in the workspace links the C
/// ABI's library, so `cargo test` does not build it: it is built here, with the
/// same cargo, profile and target directory (a no-op when it is up to date), so the
/// programs are never linked against a stale library.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let target_dir = profile_dir.parent().expect("target/<profile>");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(name) => name,
        None => panic!("no profile directory above {}", exe.display()),
    };
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "-p",
            "chaff-capi",
            "--profile",
            profile,
            "--target-dir",
        ])
        .arg(target_dir)
        .current_dir(crate_dir())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build -p chaff-capi failed");
    assert!(
        profile_dir.join("libchaff.a").is_file() && profile_dir.join("libchaff.so").is_file(),
        "no libchaff.a and libchaff.so in {}",
        profile_dir.display()
    );
    profile_dir.to_path_buf()
}

/// The compiled C programs, built once for every test.
struct Programs {
    _dir: tempfile::TempDir,
    scan_static: PathBuf,
    scan_dynamic: PathBuf,
    abi: PathBuf,
    milter_config: PathBuf,
}

fn programs() -> &'static Programs {
    static PROGRAMS: OnceLock<Programs> = OnceLock::new();
    PROGRAMS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let lib = lib_dir();
        let scan_static = dir.path().join("scan-static");
        let scan_dynamic = dir.path().join("scan-dynamic");
        let abi = dir.path().join("abi");
        let example = crate_dir().join("examples/scan.c");
        let abi_c = crate_dir().join("tests/abi.c");
        let archive = lib.join("libchaff.a");
        let rpath = format!("-Wl,-rpath,{}", lib.display());
        let static_libs = ["-lpthread", "-ldl", "-lm"];
        cc(
            &scan_static,
            &[example.as_os_str(), archive.as_os_str()],
            &static_libs,
        );
        cc(
            &abi,
            &[abi_c.as_os_str(), archive.as_os_str()],
            &static_libs,
        );
        let l = format!("-L{}", lib.display());
        cc(
            &scan_dynamic,
            &[example.as_os_str()],
            &[&l, "-lchaff", &rpath],
        );
        let milter_config = dir.path().join("chaff.toml");
        std::fs::write(
            &milter_config,
            "[thresholds]\nquarantine = 9.0\nreject = 15.0\n\n\
             [milter]\nmax_buffered_bytes = \"128M\"\n\n[accounts]\n",
        )
        .unwrap();
        Programs {
            _dir: dir,
            scan_static,
            scan_dynamic,
            abi,
            milter_config,
        }
    })
}

/// Compiles C `sources` into `out` with warnings as errors.
fn cc(out: &Path, sources: &[&std::ffi::OsStr], libs: &[&str]) {
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let mut cmd = Command::new(&compiler);
    cmd.args(["-Wall", "-Wextra", "-Werror", "-O1", "-g", "-pthread", "-I"])
        .arg(crate_dir().join("include"))
        .arg("-o")
        .arg(out)
        .args(sources)
        .args(libs);
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{compiler}`: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The corpus's messages, ham then spam, sorted.
fn corpus() -> Vec<PathBuf> {
    let root = crate_dir().join("../../corpus");
    let mut files = Vec::new();
    for sub in ["ham", "spam"] {
        let mut these: Vec<PathBuf> = std::fs::read_dir(root.join(sub))
            .unwrap_or_else(|e| panic!("{}: {e}", root.join(sub).display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        these.sort();
        files.extend(these);
    }
    assert!(files.len() > 20, "the corpus is missing: {files:?}");
    files
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// The CLI's `--format json` object for one message (src/cli/output.rs).
#[derive(Serialize)]
struct CliJsonVerdict<'a> {
    path: &'a str,
    #[serde(flatten)]
    verdict: &'a Verdict,
}

/// The JSON `chaff score --format json` prints for `verdict`, without `"path"`.
fn cli_json_without_path(verdict: &Verdict) -> String {
    let line = serde_json::to_string(&CliJsonVerdict { path: "p", verdict }).unwrap();
    let rest = line
        .strip_prefix(r#"{"path":"p","#)
        .expect("the CLI's object starts with its path");
    format!("{{{rest}")
}

/// Runs `scan` on the corpus with four threads and checks each line against the
/// engine's own verdict.
fn check_scan(program: &Path) {
    let files = corpus();
    let out = run(Command::new(program)
        .args(["-j", "4", "--json"])
        .args(&files));
    assert!(
        out.status.success(),
        "{} failed: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), files.len(), "{stdout}");
    let engine = Engine::new(&Config::default()).unwrap();
    let mut actions = std::collections::BTreeMap::new();
    for (file, line) in files.iter().zip(&lines) {
        let want = engine.scan(&std::fs::read(file).unwrap(), &Envelope::default());
        let fields: Vec<&str> = line.splitn(4, '\t').collect();
        assert_eq!(fields.len(), 4, "{line}");
        assert_eq!(fields[0], file.to_str().unwrap(), "lines out of order");
        assert_eq!(fields[1], want.action.as_str(), "{line}");
        assert_eq!(fields[2], format!("{:.2}", want.score), "{line}");
        // The same text as the CLI's object minus "path", and the same values.
        assert_eq!(
            fields[3],
            cli_json_without_path(&want),
            "{}",
            file.display()
        );
        let json: serde_json::Value = serde_json::from_str(fields[3]).unwrap();
        assert_eq!(json, serde_json::to_value(&want).unwrap());
        assert_eq!(json["score"].as_f64(), Some(want.score));
        *actions.entry(fields[1]).or_insert(0) += 1;
    }
    // The corpus has both kinds, so the comparison saw both.
    assert!(
        actions.get("deliver").is_some_and(|&n| n > 0),
        "{actions:?}"
    );
    assert!(actions.len() > 1, "{actions:?}");
}

#[test]
fn static_example_matches_the_engine() {
    check_scan(&programs().scan_static);
}

#[test]
fn dynamic_example_matches_the_engine() {
    check_scan(&programs().scan_dynamic);
}

#[test]
fn abi_edge_cases_from_c() {
    let p = programs();
    let out = run(Command::new(&p.abi).arg(&p.milter_config));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn example_reports_a_bad_config() {
    let p = programs();
    let missing = "/nonexistent/chaff-example.toml";
    let files = corpus();
    let out = run(Command::new(&p.scan_static)
        .args(["-c", missing])
        .arg(&files[0]));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(missing), "{stderr}");
    // The same program accepts a file with a [milter] table.
    let out = run(Command::new(&p.scan_static)
        .arg("-c")
        .arg(&p.milter_config)
        .arg(&files[0]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The valgrind command, or `None` (with a notice) when it is not installed.
fn valgrind() -> Option<Command> {
    let found = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("NOTICE: valgrind is not installed: skipping the memory checks");
        return None;
    }
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--quiet",
        "--error-exitcode=99",
        "--leak-check=full",
        "--errors-for-leak-kinds=definite",
    ]);
    Some(cmd)
}

#[test]
fn example_is_clean_under_valgrind() {
    let p = programs();
    let Some(mut cmd) = valgrind() else { return };
    let files = corpus();
    let out = run(cmd
        .arg(&p.scan_static)
        .args(["-j", "4", "--json"])
        .args(&files));
    assert!(
        out.status.success(),
        "valgrind: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        files.len()
    );
}

#[test]
fn abi_edge_cases_are_clean_under_valgrind() {
    let p = programs();
    let Some(mut cmd) = valgrind() else { return };
    let out = run(cmd.arg(&p.abi).arg(&p.milter_config));
    assert!(
        out.status.success(),
        "valgrind: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
