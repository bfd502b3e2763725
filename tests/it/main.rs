//! The integration tests, in one binary (as cargo's `tests/testsuite` and
//! ripgrep's `tests/` are): one module per area, sharing `support`. One
//! binary links the AWS SDK, ONNX Runtime and reqwest once instead of once per
//! file, so a rerun after a change in `function/src` relinks one executable.
//!
//! All tests share this process: nothing here may change process-wide state
//! another test reads (the environment, the current folder, a fixed port or a
//! fixed temporary path). Temporary paths carry a per-module prefix as well as
//! the process id; S3 settings go to child processes with `Command::env`.

mod support;

mod access;
mod bad_inputs;
mod batching;
mod browser;
mod canary;
mod catalogue;
mod cli;
mod cpus;
mod deploy;
mod finetune;
mod http_serve;
mod keep_alive;
mod keras;
mod lambda;
mod lambda_emulator;
mod load;
mod memory;
mod newcomer;
mod notebook;
mod oip;
mod openapi;
mod photos;
mod preprocess_reference;
mod router;
mod s3_events;
mod s3_faults;
mod s3_sim;
mod structure;
mod tunnel;
mod upload;
mod uploads;
mod zero_copy;
