//! The integration tests, in one binary (as cargo's `tests/testsuite` and
//! ripgrep's `tests/` are): one module per area, sharing `support`. One
//! binary links the AWS SDK, ONNX Runtime and reqwest once instead of once per
//! file, so a rerun after a change in `function/src` relinks one executable.
//!
//! All tests share this process: nothing here may change process-wide state
//! another test reads (the environment, the current folder, a fixed port or a
//! fixed temporary path). Temporary paths carry a per-module prefix as well as
//! the process id; S3 settings go to child processes with `Command::env`.

// Shared helpers: fixtures, the built binary, servers and S3 on loopback.
mod support;

// The API key and CORS on the real binary, over HTTP and the Lambda path.
mod access;
// The one table of bad and odd-but-valid inputs every host runs.
mod bad_inputs;
// Micro-batching and load shedding in `catdog serve`.
mod batching;
// The upload page and the tutorial's page in headless Chromium.
mod browser;
// Deploys with a safety net: the PreTraffic hook under cargo-lambda's emulator.
mod canary;
// The bad-input table against the real binary, over HTTP and the Lambda path.
mod catalogue;
// `catdog predict` and the binary's failure modes, as a user meets them.
mod cli;
// The arm64 package under qemu-aarch64; the x86_64 package on a CPU without VNNI.
mod cpus;
// The SAM template, the events, and what `sam build` packages.
mod deploy;
// The documentation against the code: links, flags, routes, this list.
mod docs;
// `explain=true`: in-graph Grad-CAM/CAM against TensorFlow's, the collage, the query.
mod explain;
// `POST /feedback`: corrections stored once, in a folder and in S3.
mod feedback;
// `catdog finetune` on real photos and on a VGG16-shaped model.
mod finetune;
// `catdog serve` over real TCP: request forms, errors, page, /health, /model.
mod http_serve;
// Keep-alive after early answers; the limit on the request's head.
mod keep_alive;
// `make image` unpacked and run chrooted, as the zip package answers.
mod image;
// `models/keras_to_onnx.py`: catdog's answers equal Keras's.
mod keras;
// The binary as a Lambda bootstrap under a stand-in Runtime API.
mod lambda;
// The bootstrap under cargo-lambda's emulator: init errors, answers.
mod lambda_emulator;
// The bounded load test (scripts/loadtest.py) against a real model.
mod load;
// The memory budget: many large pictures at once stay within bounds.
mod memory;
// What a newcomer meets after `make setup` / `make install`.
mod newcomer;
// The evcxr notebook executed headless, the tutorial end to end.
mod notebook;
// The Open Inference Protocol with tritonclient and kserve; `/metrics`.
mod oip;
// The OpenAPI document against the live server (schemathesis).
mod openapi;
// MobileNetV2 on the shared photos: Python onnxruntime's answers.
mod photos;
// The input tensors against PIL + numpy on real photos.
mod preprocess_reference;
// Pictures over the invoke limit: `POST /uploads`, `GET /uploads/{id}`.
mod presigned_uploads;
// The HTTP contract in process (no port), the v2 routes included.
mod router;
// S3 events, SQS, EventBridge, Batch Operations; `catdog predict s3://…`.
mod s3_events;
// The S3 model fetch under faults: resumed ranges, retries, refusals.
mod s3_faults;
// The simulated S3 (s3s-fs behind s3_throttle) is real enough to measure.
mod s3_sim;
// SnapStart: the hooks around the snapshot, credentials after the restore.
mod snapstart;
// The shape ARCHITECTURE.md promises, checked on the sources.
mod structure;
// `catdog serve --ngrok` without network: fast failure, local serving.
mod tunnel;
// `catdog upload` to moto's S3: multipart, per-part SHA-256.
mod upload_command;
// Mapped model weights answer exactly as the plain load.
mod zero_copy;
