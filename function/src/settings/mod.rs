//! The one settings type: every flag and every environment variable catdog
//! reads, parsed and checked by clap in one place. Every host builds from it
//! — the Lambda bootstrap, `catdog serve`, the CLI commands and the notebook
//! (through [`Settings::from_env`]) — so a bad value is refused with the same
//! message wherever it is given. No other module reads the environment
//! (the AWS SDK and the Lambda runtime read their own variables).
//!
//! Flags win over environment variables; an empty variable counts as unset.
//!
//! As ripgrep's flags go from low to high arguments, the parsing and the
//! decisions are apart:
//! - [`command`]: the command line (`Cli`, `Command`) and which flags each
//!   command takes;
//! - [`groups`]: the flags and variables as parsed, one clap group per concern;
//! - [`values`]: the parsers that check each value;
//! - [`derived`]: what the hosts receive, decided from the parsed values
//!   (`ModelSpec`, `Limits`, `Access`, `FetchOptions`, …).

mod command;
mod derived;
mod groups;
mod values;

pub use command::{Cli, Command, FinetuneArgs, PRETRAFFIC_HANDLER};
pub use derived::default_cache_dir;
pub use groups::*;
pub use values::{parse_basic_auth, parse_cidr};

use clap::Args;

use command::{parse, EnvOnly};

/// Every setting of every host.
#[derive(Args, Debug, Clone)]
pub struct Settings {
    #[command(flatten)]
    pub model: ModelSettings,
    #[command(flatten)]
    pub limits: LimitSettings,
    #[command(flatten)]
    pub access: AccessSettings,
    #[command(flatten)]
    pub fetch: FetchSettings,
    #[command(flatten)]
    pub objects: ObjectSettings,
    #[command(flatten)]
    pub serve: ServeSettings,
    #[command(flatten)]
    pub tunnel: TunnelSettings,
    #[command(flatten)]
    pub process: ProcessSettings,
    #[command(flatten)]
    pub notebook: NotebookSettings,
    #[command(flatten)]
    pub hook: HookSettings,
}

/// The settings could not be read (a bad value, or a missing one).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(String);

impl Settings {
    /// The settings from the environment variables alone, with the same
    /// parsing and checks as the command line (for the notebook).
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_args(std::iter::empty::<&str>())
    }

    /// The settings from flags (and the environment), as `catdog` reads them.
    pub fn from_args<I, T>(args: I) -> Result<Self, SettingsError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let argv = std::iter::once(std::ffi::OsString::from("catdog"))
            .chain(args.into_iter().map(Into::into));
        parse::<EnvOnly, _, _>(argv)
            .map(|e| e.settings)
            .map_err(|e| SettingsError(e.render().to_string().trim_end().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::session::{Prepack, PrepackPolicy};
    use std::time::Duration;

    fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_from_args(std::iter::once("catdog").chain(args.iter().copied()))
    }

    #[test]
    fn prefixes_never_climb_out_of_their_folder() {
        for bad in [
            "s3://bucket/../../home/",
            "s3://bucket/a/./b/",
            "s3://bucket/a\\b/",
        ] {
            let e = Settings::from_args(["--feedback", bad]).unwrap_err();
            assert!(e.to_string().contains("segments"), "{bad}: {e}");
            assert!(
                cli(&["finetune", "--base", "m.onnx", "--out", "o.onnx", "--data", bad]).is_err()
            );
        }
        let ok = Settings::from_args(["--feedback", "s3://bucket/feedback"]).unwrap();
        assert_eq!(
            ok.objects.feedback.unwrap().to_string(),
            "s3://bucket/feedback/"
        );
    }

    #[test]
    fn a_flag_applies_only_to_the_commands_it_means_something_to() {
        let refused = |args: &[&str], flag: &str| {
            let e = cli(args).expect_err(&format!("{args:?} was accepted"));
            assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict, "{e}");
            assert!(
                e.to_string()
                    .contains(&format!("--{flag} means nothing to")),
                "{e}"
            );
        };
        refused(
            &["predict", "--ngrok-basic-auth", "user:password1", "a.jpg"],
            "ngrok-basic-auth",
        );
        // Settings flags go after the subcommand, which says what they mean.
        let before = cli(&["--model", "m.onnx", "predict", "a.jpg"]).unwrap_err();
        assert_eq!(before.kind(), clap::error::ErrorKind::UnknownArgument);
        refused(&["predict", "--port", "9000", "a.jpg"], "port");
        refused(&["eval", "--api-key", "0123456789abcdef", "dir"], "api-key");
        refused(
            &["upload", "--max-batch", "3", "--to", "s3://b/k"],
            "max-batch",
        );
        refused(&["lambda", "--ngrok"], "ngrok");
        // …and each is taken where it means something.
        cli(&[
            "serve",
            "--ngrok-basic-auth",
            "user:password1",
            "--port",
            "9000",
        ])
        .unwrap();
        cli(&[
            "lambda",
            "--api-key",
            "0123456789abcdef",
            "--max-batch",
            "3",
        ])
        .unwrap();
        cli(&[
            "predict",
            "--model",
            "m.onnx",
            "--max-pixels",
            "1000",
            "a.jpg",
        ])
        .unwrap();
        cli(&[
            "upload",
            "--model",
            "m.onnx",
            "--s3-endpoint",
            "http://127.0.0.1:1",
            "--to",
            "s3://b/k",
        ])
        .unwrap();
    }

    #[test]
    fn each_command_lists_only_the_flags_it_takes() {
        let help = |name: &str| {
            let e = cli(&[name, "--help"]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{name}: {e}");
            e.to_string()
        };
        let predict = help("predict");
        assert!(
            predict.starts_with("Classify image files"),
            "its own about:\n{predict}"
        );
        for flag in ["--model", "--max-pixels", "--results-prefix", "--json"] {
            assert!(
                predict.contains(flag),
                "predict --help lacks {flag}:\n{predict}"
            );
        }
        for flag in ["--ngrok", "--port", "--api-key", "--cors-origins"] {
            assert!(
                !predict.contains(flag),
                "predict --help lists {flag}:\n{predict}"
            );
        }
        let serve = help("serve");
        for flag in ["--model", "--port", "--ngrok-basic-auth", "--api-key"] {
            assert!(serve.contains(flag), "serve --help lacks {flag}:\n{serve}");
        }
        let upload = help("upload");
        assert!(
            upload.contains("--s3-endpoint") && !upload.contains("--max-batch"),
            "{upload}"
        );
        // Every subcommand says which groups it takes.
        for sub in command::subcommand_names() {
            assert!(
                command::takes_settings(&sub),
                "`catdog {sub}` is not in Command::setting_groups"
            );
        }
    }

    fn parse(args: &[&str]) -> Result<Settings, SettingsError> {
        Settings::from_args(args.iter().copied())
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = parse(&[]).unwrap();
        let l = s.request_limits();
        assert_eq!(l.max_body_bytes, 6 * 1024 * 1024);
        assert_eq!(l.max_batch, 16);
        assert_eq!(l.batching.window, Duration::from_millis(2));
        assert_eq!(s.serve.port, 8080);
        assert_eq!(s.retry_policy().attempts, 4);
        assert!(s.session_options().zero_copy);
    }

    #[test]
    fn managed_instances_batch_and_prepack_and_snapstart_prepacks() {
        let api = ["--lambda-runtime-api", "127.0.0.1:9001"];
        let with = |extra: &[&str]| parse(&[&api[..], extra].concat()).unwrap();
        let shared = with(&["--lambda-max-concurrency", "8"]);
        assert_eq!(shared.lambda_concurrency(), 8);
        assert_eq!(
            shared.request_limits().batching.window,
            Duration::from_millis(crate::limits::DEFAULT_BATCH_WINDOW_MS)
        );
        assert_eq!(
            shared.session_options().prepack,
            PrepackPolicy::always(Prepack::Later)
        );
        // Read as lambda_runtime reads it: anything but a positive integer is one.
        for odd in ["0", "-3", "eight", "", " 8"] {
            let one = with(&[&format!("--lambda-max-concurrency={odd}")]);
            assert_eq!(one.lambda_concurrency(), 1, "{odd:?}");
            assert_eq!(one.request_limits().batching.window, Duration::ZERO);
        }
        let snap = with(&["--lambda-initialization-type", "snap-start"]);
        assert!(snap.snapstart());
        assert_eq!(
            snap.session_options().prepack,
            PrepackPolicy::always(Prepack::Now),
            "paid at publish"
        );
        assert_eq!(snap.request_limits().batching.window, Duration::ZERO);
        // `later` would be finished by every restored environment: at load.
        assert_eq!(
            with(&[
                "--lambda-initialization-type",
                "snap-start",
                "--prepack",
                "later"
            ])
            .session_options()
            .prepack,
            PrepackPolicy::always(Prepack::Now)
        );
        let on_demand = with(&["--lambda-initialization-type", "on-demand"]);
        assert!(!on_demand.snapstart());
        let quantized_only = PrepackPolicy {
            fp32: Prepack::Off,
            int8: Prepack::Now,
        };
        assert_eq!(on_demand.session_options().prepack, quantized_only);
        // With a whole vCPU to spare (3,538 MB), fp32 packs beside the invokes.
        let roomy = with(&["--lambda-memory-mb", "4096"]);
        assert_eq!(
            roomy.session_options().prepack,
            PrepackPolicy {
                fp32: Prepack::Later,
                int8: Prepack::Now
            }
        );
        assert_eq!(
            with(&["--lambda-memory-mb", "3008"])
                .session_options()
                .prepack,
            quantized_only
        );
        // Set, it is what it says everywhere.
        assert_eq!(
            with(&["--prepack", "later"]).session_options().prepack,
            PrepackPolicy::always(Prepack::Later)
        );
        assert_eq!(
            parse(&["--prepack", "false"])
                .unwrap()
                .session_options()
                .prepack,
            PrepackPolicy::always(Prepack::Off)
        );
        assert!(parse(&["--prepack", "soon"]).is_err());
        // Outside Lambda the variables mean nothing.
        let here = parse(&["--lambda-initialization-type", "snap-start"]).unwrap();
        assert!(!here.snapstart());
    }

    #[test]
    fn lambda_does_not_wait_for_company_that_cannot_come() {
        let lambda = parse(&["--lambda-runtime-api", "127.0.0.1:9001"]).unwrap();
        assert_eq!(lambda.request_limits().batching.window, Duration::ZERO);
        assert_eq!(
            lambda.session_options().prepack,
            PrepackPolicy::default(),
            "Lambda: quantized models only"
        );
        assert_eq!(
            parse(&[]).unwrap().session_options().prepack,
            PrepackPolicy::always(Prepack::Later),
            "a server packs once it answers"
        );
        assert!(lambda.emf(), "Lambda: figures as EMF lines");
        assert!(!parse(&[]).unwrap().emf(), "elsewhere: /metrics only");
        assert!(
            !parse(&["--lambda-runtime-api", "127.0.0.1:9001", "--emf", "false"])
                .unwrap()
                .emf()
        );
        let asked = parse(&[
            "--lambda-runtime-api",
            "127.0.0.1:9001",
            "--batch-window-ms",
            "5",
        ])
        .unwrap();
        assert_eq!(
            asked.request_limits().batching.window,
            Duration::from_millis(5),
            "an explicit window is kept"
        );
        assert_eq!(
            parse(&["--batch-window-ms", "0"])
                .unwrap()
                .request_limits()
                .batching
                .window,
            Duration::ZERO
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        for (args, says) in [
            (&["--model-sha256", "abc"][..], "64 hex digits"),
            (&["--model-name", "a/b"][..], "MODEL_NAME"),
            (&["--api-key", "short"][..], "at least 16 characters"),
            (&["--preprocessing", "keras"][..], "unknown preset"),
            (&["--labels", "cat,dog"][..], "JSON array"),
            (&["--neither-below", "2"][..], "between 0 and 1"),
            (&["--max-batch", "0"][..], "--max-batch"),
            (&["--ngrok-basic-auth", "a:b"][..], "8 to 128"),
            (&["--ngrok-allow-cidr", "10.0.0.0/40"][..], "prefix length"),
            (
                &["--cors-origins", "https://a.example/"][..],
                "not an origin",
            ),
            (&["--ngrok-oauth-allow-email", "a@b.c"][..], "--ngrok-oauth"),
            (&["--model", "ftp://x/y"][..], "invalid model URI"),
        ] {
            let err = parse(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} accepted"))
                .to_string();
            assert!(err.contains(says), "{args:?}: {err}");
        }
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let s = parse(&[
            "--api-key",
            "correct horse battery staple",
            "--ngrok-basic-auth",
            "ann:longpassword",
            "--ngrok-authtoken",
            "tok-123",
        ])
        .unwrap();
        let shown = format!("{s:?}");
        for secret in ["correct horse", "longpassword", "tok-123"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert_eq!(s.tunnel.basic_auth[0].user, "ann");
        assert_eq!(s.tunnel.basic_auth[0].password.expose(), "longpassword");
    }

    #[test]
    fn the_handler_makes_a_bootstrap_the_hook_whose_flags_are_its_own() {
        let on_lambda = |handler: &[&str]| {
            let mut args = vec!["--lambda-runtime-api", "127.0.0.1:9001"];
            args.extend(handler);
            parse(&args).unwrap().lambda_command()
        };
        assert!(matches!(
            on_lambda(&["--lambda-handler", PRETRAFFIC_HANDLER]),
            Command::Pretraffic
        ));
        assert!(matches!(
            on_lambda(&["--lambda-handler", "bootstrap"]),
            Command::Lambda
        ));
        assert!(matches!(on_lambda(&[]), Command::Lambda));

        let s = parse(&[
            "--checks-object",
            "s3://models/v2/m.onnx.checks.json",
            "--check-tolerance",
            "0.1",
        ])
        .unwrap();
        assert_eq!(
            s.hook.checks_object,
            Some(("models".into(), "v2/m.onnx.checks.json".into()))
        );
        assert_eq!(s.hook.check_tolerance, 0.1);
        let d = parse(&[]).unwrap().hook;
        assert_eq!(d.check_tolerance, crate::checks::DEFAULT_TOLERANCE);
        assert_eq!(d.check_timeout_s, crate::checks::DEFAULT_TIMEOUT_S);
        for (args, says) in [
            (
                &["--checks-object", "s3://models/m.onnx"][..],
                ".checks.json",
            ),
            (
                &["--checks-object", "models/m.onnx.checks.json"][..],
                "s3://",
            ),
            (&["--check-tolerance", "2"][..], "between 0 and 1"),
        ] {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(says), "{args:?}: {err}");
        }

        cli(&[
            "pretraffic",
            "--check-function",
            "catdog:7",
            "--api-key",
            "0123456789abcdef",
        ])
        .unwrap();
        let e = cli(&["serve", "--check-function", "catdog:7"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict, "{e}");
        let upload = cli(&[
            "upload", "--model", "m.onnx", "--to", "s3://b/k", "--checks", "a.jpg", "known/",
        ])
        .unwrap();
        match upload.command {
            Some(Command::Upload { checks, .. }) => {
                assert_eq!(
                    checks,
                    [
                        std::path::Path::new("a.jpg"),
                        std::path::Path::new("known/")
                    ]
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn comma_lists_and_ipv6_hosts() {
        let s = parse(&[
            "--ngrok-allow-cidr",
            "10.0.0.0/8,2001:db8::/32",
            "--ngrok-oauth",
            "github",
            "--ngrok-oauth-allow-domain",
            "example.com",
            "--host",
            "::1",
            "--port",
            "0",
        ])
        .unwrap();
        assert_eq!(s.tunnel.allow_cidrs, ["10.0.0.0/8", "2001:db8::/32"]);
        assert_eq!(s.tunnel.oauth_allow_domains, ["example.com"]);
        assert_eq!(s.bind_address(), "[::1]:0");
    }
}
