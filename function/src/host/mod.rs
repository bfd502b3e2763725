//! The hosts: where the one router (or the classifier behind it) runs. Each
//! is a library function built from [`crate::settings::Settings`]; the
//! binary only parses, dispatches and prints.
//!
//! - [`lambda`]: the AWS Lambda bootstrap.
//! - [`pretraffic`]: the same bootstrap as CodeDeploy's PreTraffic hook,
//!   checking a new version's answers before it gets traffic.
//! - [`serve`]: a local port (`catdog serve` and the notebook), with
//!   [`tunnel`] for a public ngrok URL.
//! - [`commands`]: `predict`, `eval`, `finetune` and `upload` on the command line.
//! - [`logging`]: the log subscriber every host installs.

pub mod commands;
pub(crate) mod connections;
pub mod lambda;
pub mod logging;
pub mod pretraffic;
pub(crate) mod secret_key;
pub mod serve;
pub(crate) mod snapstart;
pub mod tunnel;
