//! Deployment artefacts: the SAM template passes cfn-lint and says what the
//! README promises; the events are valid Lambda events; `sam build`'s make
//! target exists.

use std::process::Command;

use catdog_tests::*;

fn template() -> String {
    std::fs::read_to_string(workspace().join("template.yaml")).unwrap()
}

#[test]
fn template_passes_cfn_lint() {
    let py = python();
    let lint = py
        .parent()
        .map(|d| d.join("cfn-lint"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| "cfn-lint".into());
    let out = Command::new(lint)
        .arg("template.yaml")
        .current_dir(workspace())
        .output()
        .expect("run cfn-lint (make test installs it)");
    assert!(
        out.status.success(),
        "cfn-lint failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn template_has_the_promised_parts() {
    let t = template();
    for needle in [
        "Runtime: provided.al2023",
        "Handler: bootstrap",
        "BuildMethod: makefile",
        "FunctionUrlConfig:",
        "AuthType: !Ref FunctionUrlAuthType",
        "MemorySize: !Ref MemorySize",
        "MODEL_URI: !Sub \"s3://${ModelBucket}/${ModelKey}\"",
        "Action: s3:GetObject",
        // the read policy names the model object, not the bucket or a wildcard
        "Resource: !Sub \"arn:${AWS::Partition}:s3:::${ModelBucket}/${ModelKey}\"",
        "!GetAtt CatdogFunctionUrl.FunctionUrl",
    ] {
        assert!(t.contains(needle), "template.yaml lacks {needle:?}");
    }
    assert!(
        !t.contains("s3:::*") && !t.contains("s3:*"),
        "S3 access must be scoped to the model"
    );
}

#[test]
fn sam_build_target_exists_and_packages_the_runtime_library() {
    let out = Command::new("make")
        .args(["-n", "build-CatdogFunction", "ARTIFACTS_DIR=/tmp/artifacts"])
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("bootstrap") && plan.contains("--lambda-lib"),
        "{plan}"
    );
}

#[test]
fn events_are_lambda_http_events_with_a_base64_photo() {
    for name in ["function-url.json", "api-gateway-rest.json"] {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(workspace().join("events").join(name)).unwrap())
                .unwrap();
        assert_eq!(v["isBase64Encoded"], true, "{name}");
        use base64::Engine;
        let body = base64::engine::general_purpose::STANDARD
            .decode(v["body"].as_str().unwrap())
            .unwrap();
        let picture = catdog::decode::decode_rgb(&body, Default::default()).unwrap();
        assert!(
            picture.width() >= 100 && picture.height() >= 100,
            "{name}: a real photo, not a dot"
        );
    }
}
