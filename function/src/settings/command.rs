//! The command line: what to do, and which settings each command takes.

use std::path::PathBuf;

use clap::builder::TypedValueParser as _;
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use crate::finetune::{Init, NeitherMode};

use super::values::*;
use super::*;

/// The command line: what to do, and the settings it runs with.
#[derive(Debug, Clone)]
pub struct Cli {
    /// The subcommand's flags over the environment; with no subcommand
    /// (the Lambda bootstrap) the environment alone.
    pub settings: Settings,
    pub command: Option<Command>,
}

/// What clap parses: the subcommand, each given the settings flags that
/// mean something to it by [`cli_command`].
#[derive(Parser, Debug)]
#[command(
    name = "catdog",
    version,
    about = "Cat or dog? An ONNX image classifier for AWS Lambda, a local server and the command line."
)]
struct Argv {
    #[command(subcommand)]
    command: Option<Command>,
}

/// What `catdog` is asked to do.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Serve the upload page and the HTTP API on a local port (--host, --port, --ngrok).
    Serve,
    /// Classify image files (or every image in a folder, or under an S3
    /// prefix: s3://bucket/prefix/) and print the answers.
    Predict {
        /// One JSON object per line: file, label, confidence, scores.
        #[arg(long)]
        json: bool,
        /// S3 objects: also write their tags and records as the Lambda
        /// function does (which: --results, where: --results-prefix).
        #[arg(long)]
        write_results: bool,
        /// Explain each answer: write DIR/<picture>.explain.png (the picture
        /// with where the label was seen over it); with --json, each line
        /// also carries the explanation (label, method, grid, overlay file).
        #[arg(long, value_name = "DIR")]
        explain: Option<PathBuf>,
        #[arg(required = true, value_name = "FILE|DIR|s3://BUCKET/PREFIX")]
        paths: Vec<PathBuf>,
    },
    /// Run as the AWS Lambda bootstrap (the default when AWS_LAMBDA_RUNTIME_API is set).
    Lambda,
    /// Run as the CodeDeploy PreTraffic hook's Lambda bootstrap (the default on
    /// Lambda when the function's handler is `pretraffic`): checks a new version's
    /// answers against those `upload --checks` recorded, and reports to CodeDeploy.
    Pretraffic,
    /// Score a model (--model / MODEL_URI) on DIR/<label>/*: accuracy, precision/recall, confusion matrix (table + PNG).
    Eval {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Where to write the confusion-matrix PNG.
        #[arg(long, default_value = "confusion.png")]
        png: PathBuf,
        /// Photos of other things, scored as the model's rejecting label
        /// (`neither`): a 3×3 matrix for a cat/dog/neither model.
        #[arg(long, value_name = "OTHERS")]
        neither: Option<PathBuf>,
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Upload a model to S3 (multipart, SHA-256 checked per part); prints MODEL_URI and MODEL_SHA256.
    /// The file is given with --model FILE.
    Upload {
        /// s3://bucket/key
        #[arg(long)]
        to: String,
        /// Known pictures (files or folders): the model answers them here, and
        /// the pictures and answers go next to it (KEY.checks.json, KEY.checks/),
        /// for the PreTraffic hook to compare a deployed version's answers with.
        /// Without them, a deploy of template.yaml fails at that hook.
        #[arg(long, value_name = "FILE|DIR", num_args = 1..)]
        checks: Vec<PathBuf>,
    },
    /// Fine-tune a new head on DIR/train/<label>/* over a frozen ONNX base; writes one self-describing ONNX file.
    Finetune(FinetuneArgs),
}

/// `catdog finetune`'s own flags (the base's preprocessing override is
/// `--preprocessing`, as for serving).
#[derive(Args, Debug, Clone)]
pub struct FinetuneArgs {
    /// Base classifier: s3://…, https://… or a path (its last layer must be Gemm/MatMul(+Add)).
    #[arg(long)]
    pub(crate) base: String,
    /// Expected SHA-256 of the base.
    #[arg(long, value_parser = parse_sha256)]
    pub(crate) base_sha256: Option<String>,
    /// The photos: a folder with train/<label>/* (and optionally
    /// valid/<label>/*), or with <label>/* (all for training, as
    /// CATDOG_FEEDBACK stores corrections), or the same under
    /// s3://bucket/prefix/. Repeat to merge sources by label, e.g.
    /// `--data photos --data s3://bucket/feedback/`.
    #[arg(long, required = true, value_parser = parse_feedback)]
    pub(crate) data: Vec<crate::finetune::config::DataSource>,
    /// Where to write the fine-tuned model.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Most epochs; training stops earlier once the validation loss has not
    /// improved for --patience epochs, and the best epoch is kept.
    #[arg(long, default_value_t = 300)]
    pub(crate) epochs: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub(crate) lr: f32,
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub(crate) batch: usize,
    /// Seed for the split, initialisation and shuffling (same seed, same model file).
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// How the new head starts: `auto` (from the base's zero-shot cat/dog choice
    /// when the base is an ImageNet classifier and the labels are cat and dog,
    /// else random), `zero-shot` or `random`.
    #[arg(long, value_enum, default_value_t = Init::Auto)]
    pub(crate) init: Init,
    /// Decoupled weight decay, pulling the head back toward its start.
    #[arg(long, default_value_t = 1e-2)]
    pub(crate) weight_decay: f32,
    /// Epochs without a better validation loss before training stops.
    #[arg(long, default_value_t = 20)]
    pub(crate) patience: usize,
    /// Most optimizer steps in all (bounds the run on large data sets).
    #[arg(long, default_value_t = 5000)]
    pub(crate) max_steps: usize,
    /// Share of each class of train/ held out for validation when there is no valid/ folder.
    #[arg(long, default_value_t = 0.2, value_parser = parse_fraction)]
    pub(crate) valid_fraction: f64,
    /// Refuse (exit non-zero, write nothing) below this validation accuracy (0–1).
    #[arg(long, default_value_t = 0.9, value_parser = parse_fraction)]
    pub(crate) min_accuracy: f64,
    /// Write the model even when it is weak (below the floor, or below the base's zero-shot choice).
    #[arg(long)]
    pub(crate) allow_weak: bool,
    /// Label smoothing of the training targets (0–1).
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub(crate) label_smoothing: f64,
    /// Also train on each photo's mirror image (its features through the base):
    /// measured to win by cross-validation (models/README.md); `false` halves extraction.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub(crate) mirror: bool,
    /// Also train on four corner crops of each photo (80% of each side; four
    /// more passes through the base per photo): measured to win by
    /// cross-validation (models/README.md).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub(crate) crop: bool,
    /// Measure the candidate settings by K-fold cross-validation on train/ and
    /// valid/ (never test/) and print the table; nothing is written.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u16).range(2..=20).map(usize::from))]
    pub(crate) cv: Option<usize>,
    /// Photos of other things (any folder of pictures): they set the
    /// threshold of `neither`, or train it as a class (--neither-mode). A
    /// train/neither/ folder is taken the same way. Without either, the
    /// threshold comes from the labels' own photos.
    #[arg(long, value_name = "DIR", conflicts_with = "no_neither")]
    pub(crate) neither: Option<PathBuf>,
    /// With photos of other things: `class` trains `neither` as a third
    /// class (measured best, models/README.md), `threshold` only uses them
    /// to set the threshold of the base's evidence.
    #[arg(long, value_enum, default_value_t = NeitherMode::Class)]
    pub(crate) neither_mode: NeitherMode,
    /// The name of the label that means "none of the others".
    #[arg(long, default_value = "neither", value_parser = parse_label)]
    pub(crate) neither_label: String,
    /// Without photos of other things: a photo of the labels counts as a
    /// clear outlier (answered `neither`, and named in the summary) when the
    /// base's evidence for it is this many interquartile ranges under the
    /// photos' lower quartile (in logit); the threshold sits there. Larger
    /// keeps more unusual pets and lets more non-pets through
    /// (models/README.md).
    #[arg(long, default_value_t = crate::finetune::neither::FENCE_IQRS, value_parser = parse_fence)]
    pub(crate) neither_fence: f64,
    /// Every answer is one of the labels (the tutorial's forced two-way model).
    #[arg(long)]
    pub(crate) no_neither: bool,
}

/// Only the settings, no command: what hosts without a command line read.
#[derive(Parser, Debug)]
#[command(name = "catdog")]
pub(super) struct EnvOnly {
    #[command(flatten)]
    pub(super) settings: Settings,
}

/// The `_HANDLER` that makes a Lambda bootstrap the PreTraffic hook.
pub const PRETRAFFIC_HANDLER: &str = "pretraffic";

impl Settings {
    /// What a Lambda bootstrap runs, from the function's Handler: one binary
    /// and one build serve both functions of template.yaml.
    pub fn lambda_command(&self) -> Command {
        match self.process.lambda_handler.as_deref().map(str::trim) {
            Some(PRETRAFFIC_HANDLER) => Command::Pretraffic,
            _ => Command::Lambda,
        }
    }
}

impl Cli {
    /// The command line and the environment, checked; exits with clap's
    /// message (status 2) on a bad value, on a flag that means nothing to
    /// the subcommand, or after printing --help.
    pub fn from_process() -> Self {
        Self::try_from_args(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// [`Cli::from_process`] for a given `argv` (its first item is the program).
    pub(crate) fn try_from_args<I, T>(argv: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut command = without_empty_env(cli_command());
        let matches = command.clone().try_get_matches_from(argv)?;
        let parsed = Argv::from_arg_matches(&matches)?;
        let settings = match matches.subcommand() {
            Some((name, sub)) => {
                check_flags_apply(name, sub, &mut command)?;
                Settings::from_arg_matches(sub)?
            }
            None => parse::<EnvOnly, _, _>(["catdog"])?.settings,
        };
        Ok(Cli {
            settings,
            command: parsed.command,
        })
    }
}

impl Command {
    /// The groups of settings that mean something to the subcommand `name`
    /// (`None`: no such subcommand; a unit test checks that every
    /// subcommand is named here). One [`Settings`] type serves every host,
    /// so each subcommand reads all of it from the environment, but takes
    /// and lists as flags only these groups; another group's flag is
    /// refused (`catdog predict --ngrok-basic-auth …`), never quietly ignored.
    fn setting_groups(name: &str) -> Option<Vec<clap::Id>> {
        // `notebook` is no subcommand's: its settings come from the environment.
        let [model, limits, access, fetch, objects, serve, tunnel, process, _notebook, hook] =
            setting_groups();
        let groups = match name {
            "serve" => vec![
                model, limits, access, fetch, objects, serve, tunnel, process,
            ],
            "lambda" => vec![model, limits, access, fetch, objects, process],
            // access: the hook carries the classifier's API key.
            "pretraffic" => vec![hook, access, fetch, process],
            "predict" => vec![model, limits, fetch, objects, process],
            "eval" | "finetune" => vec![model, limits, fetch, process],
            "upload" => vec![model, fetch, process],
            _ => return None,
        };
        Some(groups.into_iter().flatten().collect())
    }
}

/// The whole command line: each subcommand with every settings flag, those
/// of groups that mean nothing to it hidden from its `--help` (and refused
/// by [`check_flags_apply`]: hidden, they still parse, so the refusal can
/// say why instead of clap's "unexpected argument").
fn cli_command() -> clap::Command {
    let mut top = Argv::command();
    let names: Vec<String> = top
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        top = top.mut_subcommand(&name, |sub| {
            // Settings' own doc comment would replace the subcommand's.
            let (about, long_about) = (sub.get_about().cloned(), sub.get_long_about().cloned());
            let mut sub = Settings::augment_args(sub)
                .about(resettable(about))
                .long_about(resettable(long_about));
            for id in refused_flags(&name, &sub) {
                sub = sub.mut_arg(id, |a| a.hide(true));
            }
            sub
        });
    }
    top
}

fn resettable(
    text: Option<clap::builder::StyledStr>,
) -> clap::builder::Resettable<clap::builder::StyledStr> {
    text.map_or(
        clap::builder::Resettable::Reset,
        clap::builder::Resettable::Value,
    )
}

/// The names of the subcommands (for the test that each takes its settings).
#[cfg(test)]
pub(super) fn subcommand_names() -> Vec<String> {
    Argv::command()
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect()
}

/// Whether [`Command::setting_groups`] names the subcommand `name`.
#[cfg(test)]
pub(super) fn takes_settings(name: &str) -> bool {
    Command::setting_groups(name).is_some()
}

/// The settings flags of `sub` (the subcommand `name`) that mean nothing to it.
fn refused_flags(name: &str, sub: &clap::Command) -> Vec<clap::Id> {
    let allowed = Command::setting_groups(name).unwrap_or_default();
    let every: Vec<clap::Id> = setting_groups().into_iter().flatten().collect();
    sub.get_groups()
        .filter(|g| every.contains(g.get_id()) && !allowed.contains(g.get_id()))
        .flat_map(|g| g.get_args().cloned().collect::<Vec<_>>())
        .collect()
}

/// Every group of settings, named once: [`Command::setting_groups`] takes
/// them apart by position, so a group added here must be placed there.
fn setting_groups() -> [Option<clap::Id>; 10] {
    [
        ModelSettings::group_id(),
        LimitSettings::group_id(),
        AccessSettings::group_id(),
        FetchSettings::group_id(),
        ObjectSettings::group_id(),
        ServeSettings::group_id(),
        TunnelSettings::group_id(),
        ProcessSettings::group_id(),
        NotebookSettings::group_id(),
        HookSettings::group_id(),
    ]
}

/// Refuses a flag given on the command line whose group means nothing to
/// the subcommand `name` (a value from the environment is ambient, not a
/// request, and stays allowed).
fn check_flags_apply(
    name: &str,
    sub: &clap::ArgMatches,
    command: &mut clap::Command,
) -> Result<(), clap::Error> {
    use clap::parser::ValueSource;
    command.build();
    let Some(subcommand) = command.find_subcommand_mut(name) else {
        return Ok(());
    };
    let given = refused_flags(name, subcommand)
        .into_iter()
        .find(|id| sub.value_source(id.as_str()) == Some(ValueSource::CommandLine));
    let Some(id) = given else { return Ok(()) };
    let flag = subcommand
        .get_arguments()
        .find(|a| a.get_id() == &id)
        .and_then(|a| a.get_long())
        .unwrap_or(id.as_str())
        .to_string();
    Err(subcommand.error(
        clap::error::ErrorKind::ArgumentConflict,
        format!(
            "--{flag} means nothing to `catdog {name}`; leave it out (see `catdog {name} --help`)"
        ),
    ))
}

/// Parses `argv` with the environment, an empty variable counting as unset
/// (clap would take it as an empty value, and refuse it).
pub(super) fn parse<P: Parser, I, T>(argv: I) -> Result<P, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    parse_matches(argv).map(|(parsed, _, _)| parsed)
}

/// [`parse`], also giving the matches and the command they came from.
fn parse_matches<P: Parser, I, T>(
    argv: I,
) -> Result<(P, clap::ArgMatches, clap::Command), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let command = without_empty_env(P::command());
    let matches = command.clone().try_get_matches_from(argv)?;
    let parsed = P::from_arg_matches(&matches)?;
    Ok((parsed, matches, command))
}

/// `command` (and its subcommands) with the variables that are set but
/// empty taken as unset: clap would read an empty value, and refuse it.
fn without_empty_env(mut command: clap::Command) -> clap::Command {
    let empty: Vec<clap::Id> = command
        .get_arguments()
        .filter(|a| {
            a.get_env()
                .is_some_and(|name| std::env::var_os(name).is_some_and(|v| v.is_empty()))
        })
        .map(|a| a.get_id().clone())
        .collect();
    for id in empty {
        command = command.mut_arg(id, |a| a.env(None::<&str>));
    }
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        command = command.mut_subcommand(name, without_empty_env);
    }
    command
}
