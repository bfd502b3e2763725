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

/// The template as CloudFormation reads it (cfn-lint's own YAML decoder,
/// intrinsic functions as `{"Ref": …}` / `{"Fn::If": …}`), as JSON.
fn decoded_template() -> serde_json::Value {
    let script = r#"
import json, sys
from cfnlint.decode import decode
tpl, errors = decode(sys.argv[1])
if errors:
    sys.exit(str(errors))
print(json.dumps(tpl, default=str))
"#;
    let out = Command::new(python())
        .args(["-c", script, "template.yaml"])
        .current_dir(workspace())
        .output()
        .expect("run cfn-lint's decoder");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_public_url_is_capped_and_access_is_scoped() {
    let t = decoded_template();
    let params = &t["Parameters"];
    assert_eq!(params["FunctionUrlAuthType"]["Default"], "AWS_IAM");
    assert_eq!(
        params["FunctionUrlAuthType"]["AllowedValues"],
        serde_json::json!(["AWS_IAM", "NONE"])
    );
    assert_eq!(
        t["Conditions"]["PublicUrl"],
        serde_json::json!({"Fn::Equals": [{"Ref": "FunctionUrlAuthType"}, "NONE"]})
    );
    let f = &t["Resources"]["CatdogFunction"]["Properties"];
    // NONE → reserved concurrency capped; AWS_IAM → unreserved
    assert_eq!(
        f["ReservedConcurrentExecutions"],
        serde_json::json!({"Fn::If": ["PublicUrl", {"Ref": "PublicReservedConcurrency"}, {"Ref": "AWS::NoValue"}]})
    );
    assert_eq!(
        f["FunctionUrlConfig"]["AuthType"],
        serde_json::json!({"Ref": "FunctionUrlAuthType"})
    );
    // the API key is a NoEcho parameter passed by reference, never a literal
    assert_eq!(params["ApiKey"]["NoEcho"], true);
    assert_eq!(
        f["Environment"]["Variables"]["CATDOG_API_KEY"],
        serde_json::json!({"Ref": "ApiKey"})
    );
    // one statement: read the model object, nothing else
    let statements = f["Policies"][0]["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 1);
    assert_eq!(statements[0]["Action"], "s3:GetObject");
    assert_eq!(
        statements[0]["Resource"],
        serde_json::json!({"Fn::Sub": "arn:${AWS::Partition}:s3:::${ModelBucket}/${ModelKey}"})
    );
    assert_eq!(f["Policies"].as_array().unwrap().len(), 1);
}
