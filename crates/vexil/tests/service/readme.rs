//! The README's commands, run as written, each section's `sh` blocks in order in one bash
//! session in a directory holding only `examples/flags.yaml`:
//! - "A five-minute tour of the service", with `cargo run --release --` standing for this
//!   build's `vexil`; the tour's server listens on a free port instead of 8080 (the tour's URL is
//!   rewritten to match), so that the test runs beside others;
//! - "Flags from a file, without a server", with this build's `vexil` standing for
//!   `target/release/vexil` (which `cargo build --release` would have built).
//!
//! Under a command, the README shows what it answers in `#` lines, and the output of the commands
//! since the previous such lines must show it too:
//! - a line with JSON (`{` or `"name":`) asks for each `"name": value` it gives (a string,
//!   number, `true`, `false` or `null`) somewhere in that output, spacing aside; `"..."` and
//!   `"<...>"` stand for values that differ from run to run;
//! - any other line must appear as it is (trailing spaces aside);
//! - a line in parentheses explains rather than shows, and is not checked.
//!
//! Results are computed from processed events, which trail ingest by moments, so a block that
//! reads them is run again until it shows what the README shows.

use regex::Regex;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

const TOUR_HEADING: &str = "## A five-minute tour of the service";
const FILES_HEADING: &str = "## Flags from a file, without a server";
const TOUR_URL: &str = "http://127.0.0.1:8080";
/// Printed after each block with the block's exit status.
const BLOCK_DONE: &str = "vexil-readme-block-done";
/// Printed between a block's segments.
const SEGMENT_DONE: &str = "vexil-readme-segment-done";
/// Generous: one block assigns 400 users with a curl each, against a debug build.
const BLOCK_PATIENCE: Duration = Duration::from_secs(180);
/// How long a block that reads results may take to show what the README shows.
const RESULTS_PATIENCE: Duration = Duration::from_secs(60);

struct Block {
    segments: Vec<Segment>,
}

impl Block {
    /// The block as the README has it.
    fn script(&self) -> String {
        self.segments.iter().map(|segment| segment.script.as_str()).collect()
    }
}

/// Commands of a block and the `#` lines under them that show what they answer.
struct Segment {
    script: String,
    expected: Vec<Expected>,
}

#[derive(Debug)]
enum Expected {
    /// `"name":value`, spacing removed.
    Field(String),
    Line(String),
}

static FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#""([A-Za-z_]+)"\s*:\s*("[^"]*"|-?[0-9][0-9.]*|true|false|null)"#).expect("a valid pattern")
});
static COLON_SPACING: LazyLock<Regex> = LazyLock::new(|| Regex::new(r#""\s*:\s*"#).expect("a valid pattern"));

/// The `sh` blocks of the README's section under `heading`.
fn section_blocks(heading: &str) -> Vec<Block> {
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    let (_, section) = readme.split_once(heading).unwrap_or_else(|| panic!("the README has {heading}"));
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .split("```sh\n")
        .skip(1)
        .map(|rest| rest.split_once("```").expect("every sh block is closed").0)
        .map(|script| Block { segments: segments_of(script) })
        .collect()
}

/// `script` cut after each run of `#` lines.
fn segments_of(script: &str) -> Vec<Segment> {
    let mut scripts = vec![String::new()];
    let mut after_shown = false;
    for line in script.lines() {
        let shown = line.trim_start().starts_with('#');
        if after_shown && !shown {
            scripts.push(String::new());
        }
        after_shown = shown;
        let current = scripts.last_mut().expect("one at least");
        current.push_str(line);
        current.push('\n');
    }
    scripts.into_iter().map(|script| Segment { expected: expected_in(&script), script }).collect()
}

fn expected_in(script: &str) -> Vec<Expected> {
    let mut expected = Vec::new();
    for line in script.lines() {
        let Some(shown) = line.trim_start().strip_prefix('#') else { continue };
        let shown = shown.strip_prefix(' ').unwrap_or(shown).trim_end();
        if shown.trim().is_empty() || shown.starts_with('(') {
            continue;
        }
        if shown.contains('{') || FIELD.is_match(shown) {
            expected.extend(
                FIELD
                    .captures_iter(shown)
                    .filter(|c| !(c[2].starts_with("\"...") || c[2].starts_with("\"<")))
                    .map(|c| Expected::Field(format!("\"{}\":{}", &c[1], &c[2]))),
            );
        } else {
            expected.push(Expected::Line(shown.to_owned()));
        }
    }
    expected
}

/// What `output` lacks of `expected`.
fn missing<'a>(expected: &'a [Expected], output: &str) -> Vec<&'a Expected> {
    let compact = COLON_SPACING.replace_all(output, "\":");
    expected
        .iter()
        .filter(|e| match e {
            Expected::Field(field) => !contains_whole(&compact, field),
            Expected::Line(line) => !output.contains(line.as_str()),
        })
        .collect()
}

/// `field` in `text` and not just the start of a longer value (`"version":1` in `"version":12`).
fn contains_whole(text: &str, field: &str) -> bool {
    text.match_indices(field).any(|(at, _)| {
        text[at + field.len()..].chars().next().is_none_or(|next| !(next.is_ascii_alphanumeric() || next == '.'))
    })
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An empty directory but for the README's example flags file.
fn directory_with_examples() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("examples")).unwrap();
    std::fs::copy(repository().join("examples/flags.yaml"), dir.path().join("examples/flags.yaml")).unwrap();
    dir
}

/// One bash reading a section from its standard input; the tour's server is its background job.
struct Session {
    bash: Child,
    /// Closed first when the session ends: bash exits at the end of its input.
    input: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Where bash's standard error goes, shown when a block fails.
    errors: PathBuf,
}

impl Session {
    fn start(dir: &Path, env: &[(&str, &str)]) -> Session {
        let errors = dir.join("stderr.txt");
        let mut bash = Command::new("bash")
            .args(["--noprofile", "--norc"])
            .process_group(0)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&errors).unwrap())
            .spawn()
            .expect("bash runs");
        let input = bash.stdin.take().unwrap();
        let output = BufReader::new(bash.stdout.take().unwrap());
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in output.lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut session = Session { bash, input: Some(input), lines, errors };
        // The server is stopped however the test ends: bash exits when its input closes.
        session.send("trap 'kill $(jobs -p) 2> /dev/null; wait' EXIT");
        session
    }

    fn send(&mut self, script: &str) {
        writeln!(self.input.as_mut().expect("open until dropped"), "{script}").expect("bash reads its input");
    }

    /// Runs `script` and returns its output and exit status.
    fn run(&mut self, script: &str) -> (String, i32) {
        self.send(script);
        self.send(&format!("status=$?; printf '\\n%s %d\\n' {BLOCK_DONE} \"$status\""));
        let deadline = Instant::now() + BLOCK_PATIENCE;
        let mut output = String::new();
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => match line.strip_prefix(BLOCK_DONE) {
                    Some(status) => return (output, status.trim().parse().expect("a status")),
                    None => {
                        output.push_str(&line);
                        output.push('\n');
                    }
                },
                Err(RecvTimeoutError::Timeout) => panic!("no end of the block within {BLOCK_PATIENCE:?}:\n{script}"),
                Err(RecvTimeoutError::Disconnected) => panic!("bash stopped in the block:\n{script}\n{output}"),
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A block may hang: stop bash, the tour's server and whatever else runs, all of them
            // in bash's process group.
            let group = format!("-{}", self.bash.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        }
        self.input.take();
        let _ = self.bash.wait();
    }
}

/// Runs block `n` of `section` (its commands changed by `rewrite` for the test) until each of
/// its segments shows what the README shows, for up to `patience`.
fn run_block(
    session: &mut Session,
    section: &str,
    n: usize,
    block: &Block,
    rewrite: impl Fn(&str) -> String,
    patience: Duration,
) {
    let segments: Vec<String> = block.segments.iter().map(|segment| rewrite(&segment.script)).collect();
    let script = segments.join(&format!("printf '\\n%s\\n' {SEGMENT_DONE}\n"));
    let patience = if script.contains("/results") { patience } else { Duration::ZERO };
    let started = Instant::now();
    loop {
        let (output, status) = session.run(&script);
        let outputs: Vec<&str> = output.split(&format!("\n{SEGMENT_DONE}\n")).collect();
        assert_eq!(outputs.len(), segments.len(), "{section}, block {n}: one output per segment\n{output}");
        let missing: Vec<(usize, &Expected)> = block
            .segments
            .iter()
            .zip(&outputs)
            .enumerate()
            .flat_map(|(at, (segment, output))| missing(&segment.expected, output).into_iter().map(move |e| (at, e)))
            .collect();
        if status == 0 && missing.is_empty() {
            return;
        }
        if started.elapsed() < patience {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        let errors = std::fs::read_to_string(session.errors.as_path()).unwrap_or_default();
        panic!(
            "{section}, block {n} (exit status {status}) lacks (segment, shown) {missing:?}\n--- block\n{}\n--- output\n{output}\n--- stderr\n{errors}",
            block.script()
        );
    }
}

#[test]
fn the_readme_tour_answers_as_it_shows() {
    let blocks = section_blocks(TOUR_HEADING);
    assert!(blocks.len() >= 10, "the tour has its blocks: {}", blocks.len());
    assert!(blocks[0].script().contains("serve &"), "the tour starts the server first");
    let dir = directory_with_examples();
    let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let mut session = Session::start(dir.path(), &[("VEXIL_LISTEN", &listen)]);
    let rewrite = |script: &str| {
        script
            .replace("cargo run --release --", env!("CARGO_BIN_EXE_vexil"))
            .replace(TOUR_URL, &format!("http://{listen}"))
    };
    for (n, block) in blocks.iter().enumerate() {
        run_block(&mut session, TOUR_HEADING, n, block, rewrite, RESULTS_PATIENCE);
        if n == 0 {
            session.run(r#"until curl -sf "$VEXIL/ready" > /dev/null; do sleep 0.1; done"#);
        }
    }
}

#[test]
fn the_readme_flags_file_commands_answer_as_they_show() {
    let blocks = section_blocks(FILES_HEADING);
    assert!(blocks.iter().any(|b| b.script().contains("vexil validate")), "the section validates the example");
    let dir = directory_with_examples();
    let mut session = Session::start(dir.path(), &[]);
    session.send("shopt -s expand_aliases");
    let rewrite = |script: &str| {
        script.replace("cargo build --release\n", "").replace("target/release/vexil", env!("CARGO_BIN_EXE_vexil"))
    };
    for (n, block) in blocks.iter().enumerate() {
        run_block(&mut session, FILES_HEADING, n, block, rewrite, Duration::ZERO);
    }
}

#[test]
fn tour_expectations_are_read_from_the_comment_lines() {
    let block =
        "curl x\n# 201 {\"key\": \"a\", \"id\": \"...\", \"n\": 1, ...}\n#   - a line\n# (explained)\nrun # inline\n";
    let expected: Vec<String> = expected_in(block).iter().map(|e| format!("{e:?}")).collect();
    assert_eq!(expected, [r#"Field("\"key\":\"a\"")"#, r#"Field("\"n\":1")"#, r#"Line("  - a line")"#]);
    let expected = expected_in(block);
    assert!(missing(&expected, "{\"key\": \"a\", \"n\":1}\n  - a line   \n").is_empty());
    assert_eq!(missing(&expected, "{\"key\":\"a\",\"n\":12}\n  - a line\n").len(), 1, "1 is not 12");
    assert_eq!(missing(&expected, "{\"key\":\"a\",\"n\":1}\n").len(), 1);
}

#[test]
fn shown_lines_belong_to_the_commands_above_them() {
    let block = "a\nb \\\n  c\n# {\"n\": 1}\n#   more\nd\n# line\ne # inline\n";
    let segments = segments_of(block);
    let scripts: Vec<&str> = segments.iter().map(|s| s.script.as_str()).collect();
    assert_eq!(Block { segments: segments_of(block) }.script(), block, "the segments make up the block");
    assert_eq!(scripts, ["a\nb \\\n  c\n# {\"n\": 1}\n#   more\n", "d\n# line\n", "e # inline\n"]);
    let counts: Vec<usize> = segments.iter().map(|s| s.expected.len()).collect();
    assert_eq!(counts, [2, 1, 0]);
}
