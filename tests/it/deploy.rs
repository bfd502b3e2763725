//! Deployment artefacts: the SAM template passes cfn-lint and says what
//! docs/deploy.md promises; the events are valid Lambda events; and what `sam build`
//! packages (the real SAM CLI, offline, no Docker) is what ships: its
//! `bootstrap` and ONNX Runtime library need no newer glibc than Amazon Linux
//! 2023's, and, run under cargo-lambda's Lambda emulator in an environment
//! holding only what Lambda and the template give it, answer the Function URL
//! event in `events/` as `catdog predict` answers the same photo.
//!
//! The template as CloudFormation decodes it: a public URL ⇒ a
//! reserved-concurrency cap, a NoEcho API key, the read policy naming the
//! model object only; the alias, deployment preference, alarms, hook and its
//! permissions, and the provisioned concurrency condition; the SAM CLI's own
//! transform (samtranslator, offline) puts the URL and the queue's mapping on
//! the alias, gates traffic by the hook and gives the hook invoke permission
//! on the new version only. The hook's package is the same bootstrap alone,
//! which, run bare, refuses an event that is not CodeDeploy's. The real
//! `sam build` takes minutes the first time, seconds once target/ holds the
//! release build.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::package::*;
use crate::support::*;

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
        // the model is downloaded into /tmp, then mapped: /tmp must hold it
        "Size: !Ref EphemeralStorage",
        "MODEL_URI: !Sub \"s3://${ModelBucket}/${ModelKey}\"",
        "Action: s3:GetObject",
        // the read policy names the model object, not the bucket or a wildcard
        "Resource: !Sub \"arn:${AWS::Partition}:s3:::${ModelBucket}/${ModelKey}\"",
        "!GetAtt CatdogFunctionUrl.FunctionUrl",
    ] {
        assert!(t.contains(needle), "template.yaml lacks {needle:?}");
    }
    assert!(
        !t.contains("s3:::*"),
        "S3 access must be scoped to named buckets"
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
    // The API key is a NoEcho parameter kept in Secrets Manager: the
    // function's environment holds the secret's ARN, never the key, and
    // the function may read that secret only.
    assert_eq!(params["ApiKey"]["NoEcho"], true);
    let vars = &f["Environment"]["Variables"];
    assert!(vars.get("CATDOG_API_KEY").is_none(), "{vars}");
    assert_eq!(
        vars["CATDOG_API_KEY_SECRET"],
        serde_json::json!({"Fn::If": ["HasApiKey", {"Ref": "ApiKeySecret"}, {"Ref": "AWS::NoValue"}]})
    );
    let secret = &t["Resources"]["ApiKeySecret"];
    assert_eq!(secret["Type"], "AWS::SecretsManager::Secret");
    assert_eq!(secret["Condition"], "HasApiKey");
    assert_eq!(
        secret["Properties"]["SecretString"],
        serde_json::json!({"Ref": "ApiKey"})
    );
    // The function may read the model object; read and tag the uploads;
    // read and write records under the results prefix; list the uploads
    // bucket (so a missing key is a 404): nothing else, no wildcard action.
    assert_eq!(f["Policies"], serde_json::json!([{"Ref": "CatdogAccess"}]));
    let access = &t["Resources"]["CatdogAccess"];
    assert_eq!(access["Type"], "AWS::IAM::ManagedPolicy");
    let all = access["Properties"]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap();
    let (statements, optional): (Vec<_>, Vec<_>) =
        all.iter().partition(|s| s.get("Fn::If").is_none());
    assert_eq!(
        optional,
        [
            &serde_json::json!({"Fn::If": ["HasFeedback", {
            "Sid": "StoreCorrections", "Effect": "Allow", "Action": "s3:PutObject",
            "Resource": {"Fn::Sub": "arn:${AWS::Partition}:s3:::${UploadsBucketName}/${FeedbackPrefix}*"},
            "Condition": {"Null": {"s3:if-none-match": "false"}}
        }, {"Ref": "AWS::NoValue"}]}),
            &serde_json::json!({"Fn::If": ["HasApiKey", {
            "Sid": "ReadTheApiKeyOnly", "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue", "Resource": {"Ref": "ApiKeySecret"}
        }, {"Ref": "AWS::NoValue"}]})
        ]
    );
    let sub = |v: &serde_json::Value| v["Fn::Sub"].as_str().unwrap_or("").to_string();
    assert_eq!(statements[0]["Action"], "s3:GetObject");
    assert_eq!(
        sub(&statements[0]["Resource"]),
        "arn:${AWS::Partition}:s3:::${ModelBucket}/${ModelKey}"
    );
    let resources: Vec<String> = statements.iter().map(|s| sub(&s["Resource"])).collect();
    assert_eq!(
        resources,
        [
            "arn:${AWS::Partition}:s3:::${ModelBucket}/${ModelKey}",
            // Read and tag the pictures under the uploads prefix only.
            "arn:${AWS::Partition}:s3:::${UploadsBucketName}/${UploadsPrefix}*",
            "arn:${AWS::Partition}:s3:::${UploadsBucketName}/${ResultsPrefix}*",
            "arn:${AWS::Partition}:s3:::${UploadsBucketName}/${UploadsPrefix}*",
            "arn:${AWS::Partition}:s3:::${UploadsBucketName}",
        ]
    );
    for st in &statements {
        assert_eq!(st["Effect"], "Allow");
        let actions: Vec<&str> = match &st["Action"] {
            serde_json::Value::String(a) => vec![a.as_str()],
            v => v
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect(),
        };
        for a in actions {
            assert!(a.starts_with("s3:") && !a.contains('*'), "{a}");
            assert!(!a.starts_with("s3:Delete"), "{a}");
        }
    }
    // PutObject only for records, and for presigned uploads under UploadsPrefix.
    let puts: Vec<String> = statements
        .iter()
        .filter(|s| s["Action"].to_string().contains("s3:PutObject\""))
        .map(|s| sub(&s["Resource"]))
        .collect();
    assert_eq!(
        puts,
        [
            "arn:${AWS::Partition}:s3:::${UploadsBucketName}/${ResultsPrefix}*",
            "arn:${AWS::Partition}:s3:::${UploadsBucketName}/${UploadsPrefix}*",
        ]
    );
}

/// The descriptions of the template's rule assertions that fail for these
/// parameter values (CloudFormation refuses the stack with them).
fn refused_by_rules(t: &serde_json::Value, given: serde_json::Value) -> Vec<String> {
    let mut refused = Vec::new();
    for rule in t["Rules"].as_object().unwrap().values() {
        let applies = rule
            .get("RuleCondition")
            .is_none_or(|c| evaluate(c, t, &given).as_bool().unwrap());
        for a in rule["Assertions"].as_array().unwrap() {
            if applies && !evaluate(&a["Assert"], t, &given).as_bool().unwrap() {
                refused.push(a["AssertDescription"].as_str().unwrap().to_string());
            }
        }
    }
    refused
}

#[test]
fn a_public_url_without_a_key_cannot_be_deployed() {
    let t = decoded_template();
    let key = "a-key-of-twenty-chars";
    // Public without a key: refused, saying what to change.
    let refused = refused_by_rules(&t, serde_json::json!({"FunctionUrlAuthType": "NONE"}));
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].contains("ApiKey"), "{refused:?}");
    assert!(!refused_by_rules(
        &t,
        serde_json::json!({"FunctionUrlAuthType": "NONE", "ApiKey": ""})
    )
    .is_empty());
    // Public with a key, or signed requests with or without one: deployed.
    for ok in [
        serde_json::json!({"FunctionUrlAuthType": "NONE", "ApiKey": key}),
        serde_json::json!({}),
        serde_json::json!({"FunctionUrlAuthType": "AWS_IAM", "ApiKey": key}),
    ] {
        assert_eq!(
            refused_by_rules(&t, ok.clone()),
            Vec::<String>::new(),
            "{ok}"
        );
    }
    // The model's digest is required: the function serves only what was published.
    let sha = &t["Parameters"]["ModelSha256"];
    assert!(sha.get("Default").is_none(), "{sha}");
    assert_eq!(sha["AllowedPattern"], "^[0-9a-fA-F]{64}$");
}

fn sub_of(v: &serde_json::Value) -> String {
    v["Fn::Sub"].as_str().unwrap_or("").to_string()
}

#[test]
fn uploads_are_notified_through_a_queue_with_a_dead_letter_queue_and_batch_can_invoke() {
    let t = decoded_template();
    let r = &t["Resources"];
    let bucket = &r["UploadsBucket"]["Properties"];
    assert_eq!(
        bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
            ["ServerSideEncryptionByDefault"]["SSEAlgorithm"],
        "AES256"
    );
    for k in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(bucket["PublicAccessBlockConfiguration"][k], true, "{k}");
    }
    // The notification: created objects under UploadsPrefix only (records,
    // under ResultsPrefix, are never notified), into the queue.
    let q = &bucket["NotificationConfiguration"]["QueueConfigurations"][0];
    assert_eq!(q["Event"], "s3:ObjectCreated:*");
    assert_eq!(
        q["Queue"],
        serde_json::json!({"Fn::GetAtt": ["UploadsQueue", "Arn"]})
    );
    assert_eq!(
        q["Filter"]["S3Key"]["Rules"][0],
        serde_json::json!({"Name": "prefix", "Value": {"Ref": "UploadsPrefix"}})
    );
    assert_ne!(
        t["Parameters"]["UploadsPrefix"]["Default"],
        t["Parameters"]["ResultsPrefix"]["Default"]
    );
    // The page's PUTs past the invoke limit: the function presigns them into
    // UploadsPrefix, and the bucket lets a browser send them.
    assert_eq!(
        sub_of(&r["CatdogFunction"]["Properties"]["Environment"]["Variables"]["CATDOG_UPLOADS"]),
        "s3://${UploadsBucketName}/${UploadsPrefix}"
    );
    let cors = &bucket["CorsConfiguration"]["CorsRules"][0];
    assert_eq!(cors["AllowedMethods"], serde_json::json!(["PUT"]));
    // The page sends the ticket's signed headers: its type and If-None-Match.
    assert_eq!(
        cors["AllowedHeaders"],
        serde_json::json!(["content-type", "if-none-match"])
    );
    // Nothing grows without bound: pictures expire, replaced versions and
    // unfinished multipart uploads after a day.
    let rules = &bucket["LifecycleConfiguration"]["Rules"];
    assert_eq!(
        rules,
        &serde_json::json!([
            {"Id": "ExpireUploads", "Status": "Enabled", "Prefix": {"Ref": "UploadsPrefix"},
             "ExpirationInDays": {"Ref": "UploadsRetentionDays"}},
            {"Fn::If": ["HasFeedback", {"Id": "ExpireCorrections", "Status": "Enabled",
             "Prefix": {"Ref": "FeedbackPrefix"}, "ExpirationInDays": {"Ref": "FeedbackRetentionDays"}},
             {"Ref": "AWS::NoValue"}]},
            {"Id": "ExpireNoncurrentVersions", "Status": "Enabled",
             "NoncurrentVersionExpiration": {"NoncurrentDays": 1}, "ExpiredObjectDeleteMarker": true},
            {"Id": "AbortIncompleteMultipartUploads", "Status": "Enabled",
             "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
        ])
    );
    let queue = &r["UploadsQueue"]["Properties"];
    assert_eq!(
        queue["RedrivePolicy"]["deadLetterTargetArn"],
        serde_json::json!({"Fn::GetAtt": ["UploadsDeadLetterQueue", "Arn"]})
    );
    assert!(queue["VisibilityTimeout"].as_u64().unwrap() >= 6 * 30);
    let source = &r["CatdogFunction"]["Properties"]["Events"]["Uploads"];
    assert_eq!(source["Type"], "SQS");
    assert_eq!(
        source["Properties"]["FunctionResponseTypes"],
        serde_json::json!(["ReportBatchItemFailures"])
    );
    // Corrections: off by default; when on, under their own prefix, apart
    // from the uploads and the records.
    let vars = &r["CatdogFunction"]["Properties"]["Environment"]["Variables"];
    assert_eq!(t["Parameters"]["FeedbackPrefix"]["Default"], "");
    assert_eq!(
        vars["CATDOG_FEEDBACK"],
        serde_json::json!({"Fn::If": ["HasFeedback",
            {"Fn::Sub": "s3://${UploadsBucketName}/${FeedbackPrefix}"}, {"Ref": "AWS::NoValue"}]})
    );
    assert!(
        !evaluate(&t["Conditions"]["HasFeedback"], &t, &serde_json::json!({}))
            .as_bool()
            .unwrap()
    );
    for (prefix, refused) in [
        ("feedback/", false),
        ("incoming/", true),
        ("catdog-results/", true),
    ] {
        let given = serde_json::json!({"FeedbackPrefix": prefix});
        assert_eq!(!refused_by_rules(&t, given).is_empty(), refused, "{prefix}");
    }
    // Only the uploads bucket may send to the queue.
    let qp = &r["UploadsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(qp["Principal"]["Service"], "s3.amazonaws.com");
    assert!(qp["Condition"]["ArnEquals"]["aws:SourceArn"]
        .to_string()
        .contains("UploadsBucketName"));
    // Batch Operations may invoke the function and nothing else of it.
    let role = &r["BatchOperationsRole"]["Properties"];
    let trust = &role["AssumeRolePolicyDocument"]["Statement"][0];
    assert_eq!(
        trust["Principal"]["Service"],
        "batchoperations.s3.amazonaws.com"
    );
    // Jobs of this account only (confused deputy): account and job ARN.
    assert_eq!(
        trust["Condition"]["StringEquals"]["aws:SourceAccount"],
        serde_json::json!({"Ref": "AWS::AccountId"})
    );
    assert_eq!(
        sub_of(&trust["Condition"]["ArnLike"]["aws:SourceArn"]),
        "arn:${AWS::Partition}:s3:${AWS::Region}:${AWS::AccountId}:job/*"
    );
    let allowed = role["Policies"][0]["PolicyDocument"]["Statement"].to_string();
    assert!(allowed.contains("lambda:InvokeFunction"), "{allowed}");
    for out in [
        "UploadsBucket",
        "UploadsQueueUrl",
        "DeadLetterQueueUrl",
        "BatchOperationsRoleArn",
    ] {
        assert!(t["Outputs"].get(out).is_some(), "{out}");
    }
}

/// A statement's actions, one or a list.
fn actions(statement: &serde_json::Value) -> Vec<String> {
    match &statement["Action"] {
        serde_json::Value::String(a) => vec![a.clone()],
        v => v
            .as_array()
            .unwrap_or_else(|| panic!("no Action in {statement}"))
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect(),
    }
}

/// The function resources of template.yaml, each with the Hosting that
/// makes it (its condition).
const HOSTED: [(&str, &str); 3] = [
    ("CatdogFunction", "OnDemand"),
    ("CatdogSnapStartFunction", "SnapStart"),
    ("CatdogManagedFunction", "ManagedInstances"),
];

/// What the template writes where it means "the classifier": `of` each
/// function resource, chosen by Hosting.
fn hosted(of: impl Fn(&str) -> serde_json::Value) -> serde_json::Value {
    let [(first, on_first), (second, on_second), (third, _)] = HOSTED;
    json!({"Fn::If": [on_first, of(first), {"Fn::If": [on_second, of(second), of(third)]}]})
}

/// The three function resources are one function run three ways: every
/// property but those that say how it runs is the same in each (an edit to
/// one copy alone fails here), and each has only its own.
#[test]
fn every_hosting_runs_the_same_function_and_differs_only_in_how() {
    let t = decoded_template();
    let r = &t["Resources"];
    let own: [&[&str]; 3] = [
        // the zip on demand; provisioned concurrency may keep some warm
        &[
            "CodeUri",
            "Handler",
            "Runtime",
            "EphemeralStorage",
            "ProvisionedConcurrencyConfig",
        ],
        // the image, snapshotted at publish; /tmp at SnapStart's 512 MB
        &["PackageType", "ImageUri", "SnapStart", "EphemeralStorage"],
        // the zip on the capacity provider's instances
        &[
            "CodeUri",
            "Handler",
            "Runtime",
            "EphemeralStorage",
            "CapacityProviderConfig",
        ],
    ];
    let props = |name: &str| r[name]["Properties"].as_object().unwrap().clone();
    let (first, _) = HOSTED[0];
    let first_props = props(first);
    let shared: Vec<String> = first_props
        .keys()
        .filter(|k| !own[0].contains(&k.as_str()))
        .cloned()
        .collect();
    for (i, (name, hosting)) in HOSTED.iter().enumerate() {
        assert_eq!(r[name]["Type"], "AWS::Serverless::Function");
        assert_eq!(r[name]["Condition"], *hosting, "{name}");
        let mut p = props(name);
        if *hosting == "SnapStart" {
            // Its one difference: the model may come from the image.
            let uri = &mut p["Environment"]["Variables"]["MODEL_URI"];
            let s3 = &first_props["Environment"]["Variables"]["MODEL_URI"];
            assert_eq!(
                *uri,
                json!({"Fn::If": ["ModelFromTheImage", {"Ref": "AWS::NoValue"}, s3]})
            );
            *uri = s3.clone();
        }
        for key in &shared {
            assert_eq!(
                p.get(key),
                first_props.get(key),
                "{name}: {key} differs from {first}'s"
            );
        }
        // The two zips are the same package, /tmp alike.
        if *hosting == "ManagedInstances" {
            for key in ["CodeUri", "Handler", "Runtime", "EphemeralStorage"] {
                assert_eq!(p.get(key), first_props.get(key), "{name}: {key}");
            }
        }
        let mut keys: Vec<&str> = p
            .keys()
            .map(String::as_str)
            .filter(|k| !shared.iter().any(|s| s == k))
            .collect();
        keys.sort_unstable();
        let mut want = own[i].to_vec();
        want.sort_unstable();
        assert_eq!(keys, want, "{name}'s own properties");
    }
    for key in [
        "Environment",
        "Policies",
        "DeploymentPreference",
        "Events",
        "FunctionUrlConfig",
    ] {
        assert!(
            shared.iter().any(|k| k == key),
            "{key} is not shared: {shared:?}"
        );
    }
    assert_eq!(t["Parameters"]["Hosting"]["Default"], "OnDemand");
    // The zip on demand is what a deploy without parameters makes.
    for (name, hosting) in HOSTED {
        let on = evaluate(&json!({ "Condition": hosting }), &t, &json!({}));
        assert_eq!(on, json!(name == "CatdogFunction"), "{name}");
    }
}

/// What AWS would refuse halfway through a deploy is refused before it
/// starts, saying what to change.
#[test]
fn a_hosting_without_what_it_needs_cannot_be_deployed() {
    let t = decoded_template();
    let refused = |given: serde_json::Value| refused_by_rules(&t, given);
    let image = IMAGE;
    let said = refused(json!({"Hosting": "SnapStart"}));
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains("ImageUri") && said[0].contains("make image"),
        "{said:?}"
    );
    let said =
        refused(json!({"Hosting": "SnapStart", "ImageUri": image, "ProvisionedConcurrency": 2}));
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("ProvisionedConcurrency"), "{said:?}");
    assert_eq!(
        refused(json!({"Hosting": "SnapStart", "ImageUri": image})),
        Vec::<String>::new()
    );

    let said = refused(json!({"Hosting": "ManagedInstances"}));
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("SubnetIds"), "{said:?}");
    let subnets = "subnet-0a,subnet-0b";
    let said = refused(
        json!({"Hosting": "ManagedInstances", "SubnetIds": subnets, "ProvisionedConcurrency": 1}),
    );
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("ProvisionedConcurrency"), "{said:?}");
    assert_eq!(
        refused(json!({"Hosting": "ManagedInstances", "SubnetIds": subnets})),
        Vec::<String>::new()
    );
    // A model inside an image: only the image can carry it.
    let said = refused(json!({"ModelInImage": "true"}));
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("SnapStart"), "{said:?}");
    let inside = json!({"Hosting": "SnapStart", "ImageUri": image, "ModelInImage": "true"});
    assert_eq!(refused(inside.clone()), Vec::<String>::new());
    // ... and then the function names no S3 model, so the image's applies.
    let env = &t["Resources"]["CatdogSnapStartFunction"]["Properties"]["Environment"]["Variables"];
    let from_image = evaluate(&json!({"Condition": "ModelFromTheImage"}), &t, &inside);
    assert_eq!(from_image, json!(true));
    let not_asked = evaluate(
        &json!({"Condition": "ModelFromTheImage"}),
        &t,
        &json!({"Hosting": "SnapStart"}),
    );
    assert_eq!(not_asked, json!(false));
    assert_eq!(env["MODEL_URI"]["Fn::If"][0], "ModelFromTheImage");
    // On demand needs neither.
    assert_eq!(
        refused(json!({"ProvisionedConcurrency": 3})),
        Vec::<String>::new()
    );
}

#[test]
fn deploys_shift_the_live_alias_by_canary_and_roll_back_on_alarms() {
    let t = decoded_template();
    let r = &t["Resources"];
    let params = &t["Parameters"];
    let f = &r["CatdogFunction"]["Properties"];
    assert_eq!(f["AutoPublishAlias"], "live");

    // Canary by default; all at once and linear on demand.
    let pref = &f["DeploymentPreference"];
    assert_eq!(pref["Type"], serde_json::json!({"Ref": "DeploymentType"}));
    assert_eq!(
        params["DeploymentType"]["Default"],
        "Canary10Percent5Minutes"
    );
    let allowed: Vec<&str> = params["DeploymentType"]["AllowedValues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(allowed.contains(&"AllAtOnce"), "{allowed:?}");
    assert!(
        allowed.iter().any(|v| v.starts_with("Linear10Percent")),
        "{allowed:?}"
    );
    assert!(
        allowed.iter().all(|v| v.starts_with("Canary10Percent")
            || v.starts_with("Linear10Percent")
            || *v == "AllAtOnce"),
        "only CodeDeploy's Lambda configurations: {allowed:?}"
    );

    // Each alarm watches the live alias's own metric, and rolls back.
    assert_eq!(
        pref["Alarms"],
        serde_json::json!([{"Ref": "LiveErrorsAlarm"}, {"Ref": "LiveThrottlesAlarm"}])
    );
    let live = serde_json::json!([
        {"Name": "FunctionName", "Value": hosted(|f| serde_json::json!({"Ref": f}))},
        {"Name": "Resource", "Value": {"Fn::Sub": ["${Function}:live",
            {"Function": hosted(|f| serde_json::json!({"Ref": f}))}]}},
    ]);
    for alarm in ["LiveErrorsAlarm", "LiveThrottlesAlarm"] {
        assert_eq!(r[alarm]["Type"], "AWS::CloudWatch::Alarm", "{alarm}");
        let a = &r[alarm]["Properties"];
        assert_eq!(a["TreatMissingData"], "notBreaching", "{alarm}");
        assert_eq!(a["ComparisonOperator"], "GreaterThanOrEqualToThreshold");
    }
    // Throttles: a count over two minutes.
    let throttles = &r["LiveThrottlesAlarm"]["Properties"];
    assert_eq!(throttles["Namespace"], "AWS/Lambda");
    assert_eq!(throttles["MetricName"], "Throttles");
    assert_eq!(throttles["Dimensions"], live);
    assert_eq!(throttles["Statistic"], "Sum");
    assert_eq!(throttles["Period"], 60);
    // Errors: a rate of the live alias's invocations, not a count, so one
    // caller cannot veto a deployment; quiet minutes never alarm.
    let errors = &r["LiveErrorsAlarm"]["Properties"];
    assert!(errors.get("MetricName").is_none(), "{errors}");
    let metrics = errors["Metrics"].as_array().unwrap();
    for (i, (id, name)) in [("errors", "Errors"), ("invocations", "Invocations")]
        .into_iter()
        .enumerate()
    {
        let m = &metrics[i];
        assert_eq!(
            (m["Id"].as_str(), m["ReturnData"].as_bool()),
            (Some(id), Some(false))
        );
        let stat = &m["MetricStat"];
        assert_eq!(stat["Metric"]["Namespace"], "AWS/Lambda");
        assert_eq!(stat["Metric"]["MetricName"], name);
        assert_eq!(stat["Metric"]["Dimensions"], live);
        assert_eq!(
            (stat["Stat"].as_str(), stat["Period"].as_u64()),
            (Some("Sum"), Some(60))
        );
    }
    assert_eq!(
        metrics[2]["Expression"],
        "IF(invocations >= 10, 100 * errors / invocations, IF(errors >= 3, 100, 0))"
    );
    assert_eq!(metrics[2]["ReturnData"], true);
    assert_eq!(
        errors["Threshold"],
        serde_json::json!({"Ref": "ErrorRatePercent"})
    );
    assert_eq!(params["ErrorRatePercent"]["Default"], 5);
    assert_eq!(
        pref["Hooks"],
        serde_json::json!({"PreTraffic": {"Ref": "PreTrafficHook"}})
    );

    // Provisioned concurrency on the alias, only when asked for.
    assert_eq!(params["ProvisionedConcurrency"]["Type"], "Number");
    assert_eq!(params["ProvisionedConcurrency"]["Default"], 0);
    assert_eq!(
        t["Conditions"]["HasProvisionedConcurrency"],
        serde_json::json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "ProvisionedConcurrency"}, 0]}]})
    );
    assert_eq!(
        f["ProvisionedConcurrencyConfig"],
        serde_json::json!({"Fn::If": [
            "HasProvisionedConcurrency",
            {"ProvisionedConcurrentExecutions": {"Ref": "ProvisionedConcurrency"}},
            {"Ref": "AWS::NoValue"}
        ]})
    );

    // Batch Operations and a public URL reach the alias, never $LATEST.
    let batch =
        &r["BatchOperationsRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"];
    let invoke: Vec<&serde_json::Value> = batch
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| actions(s).iter().any(|a| a.starts_with("lambda:")))
        .collect();
    assert_eq!(invoke.len(), 1, "{batch}");
    assert_eq!(actions(invoke[0]), ["lambda:InvokeFunction"]);
    assert_eq!(
        invoke[0]["Resource"],
        hosted(|f| serde_json::json!({"Ref": format!("{f}.Alias")}))
    );
    assert_eq!(
        t["Outputs"]["FunctionAliasArn"]["Value"],
        hosted(|f| serde_json::json!({"Ref": format!("{f}.Alias")}))
    );
    for (permission, action) in [
        ("PublicUrlInvokeFunctionUrl", "lambda:InvokeFunctionUrl"),
        ("PublicUrlInvokeFunction", "lambda:InvokeFunction"),
    ] {
        let p = &r[permission];
        assert_eq!(p["Condition"], "PublicUrl", "{permission}");
        assert_eq!(p["Properties"]["Action"], action, "{permission}");
        assert_eq!(
            p["Properties"]["FunctionName"],
            hosted(|f| serde_json::json!({"Ref": format!("{f}.Alias")})),
            "{permission}"
        );
    }
}

#[test]
fn the_hook_is_the_same_build_with_the_narrowest_permissions() {
    let t = decoded_template();
    let r = &t["Resources"];
    let hook = &r["PreTrafficHook"];
    let f = &r["CatdogFunction"];
    assert_eq!(hook["Type"], "AWS::Serverless::Function");
    assert_eq!(hook["Metadata"]["BuildMethod"], "makefile");
    let h = &hook["Properties"];
    // The same code, runtime and architecture; the handler picks the hook.
    for same in ["CodeUri", "Runtime", "Architectures"] {
        assert_eq!(h[same], f["Properties"][same], "{same}");
    }
    assert_eq!(h["Handler"], catdog::settings::PRETRAFFIC_HANDLER);
    // SAM's CodeDeploy role may invoke CodeDeployHook_* functions only.
    assert!(
        sub_of(&h["FunctionName"]).starts_with("CodeDeployHook_"),
        "{}",
        h["FunctionName"]
    );
    assert_eq!(h["DeploymentPreference"]["Enabled"], false);
    let vars = &h["Environment"]["Variables"];
    assert_eq!(
        vars["CATDOG_CHECK_FUNCTION"],
        hosted(|f| serde_json::json!({"Ref": format!("{f}.Version")}))
    );
    assert_eq!(
        sub_of(&vars["CATDOG_CHECKS"]),
        "s3://${ModelBucket}/${ModelKey}.checks.json"
    );
    assert_eq!(
        vars["CATDOG_CHECK_TOLERANCE"],
        serde_json::json!({"Ref": "CheckTolerance"})
    );
    assert_eq!(
        t["Parameters"]["CheckTolerance"]["Default"],
        catdog::checks::DEFAULT_TOLERANCE.to_string()
    );
    assert_eq!(
        vars["CATDOG_API_KEY_SECRET"],
        serde_json::json!({"Fn::If": ["HasApiKey", {"Ref": "ApiKeySecret"}, {"Ref": "AWS::NoValue"}]})
    );
    // The checks give up in time to report before Lambda ends the hook.
    assert!(vars.get("CATDOG_CHECK_TIMEOUT_S").is_none(), "{vars}");
    let budget = catdog::checks::DEFAULT_TIMEOUT_S;
    assert!(
        h["Timeout"].as_f64().unwrap() >= budget + 30.0,
        "Timeout {} leaves no time to report after {budget} s of checks",
        h["Timeout"]
    );

    // Invoke the new version, report to this stack's deployment group, read
    // the checks next to the model: nothing else.
    assert_eq!(h["Policies"].as_array().unwrap().len(), 1);
    let statements = h["Policies"][0]["Statement"].as_array().unwrap();
    let granted: Vec<(Vec<String>, serde_json::Value)> = statements
        .iter()
        .map(|s| {
            // The key's secret only when there is a key.
            let s = match s.get("Fn::If") {
                Some(when) => {
                    assert_eq!(when[0], "HasApiKey");
                    assert_eq!(when[2], serde_json::json!({"Ref": "AWS::NoValue"}));
                    &when[1]
                }
                None => s,
            };
            assert_eq!(s["Effect"], "Allow");
            (actions(s), s["Resource"].clone())
        })
        .collect();
    assert_eq!(
        granted,
        [
            (
                vec!["lambda:InvokeFunction".to_string()],
                hosted(|f| serde_json::json!({"Ref": format!("{f}.Version")}))
            ),
            (
                vec!["codedeploy:PutLifecycleEventHookExecutionStatus".to_string()],
                serde_json::json!({"Fn::Sub": "arn:${AWS::Partition}:codedeploy:${AWS::Region}:${AWS::AccountId}:deploymentgroup:${ServerlessDeploymentApplication}/*"})
            ),
            (
                vec!["s3:GetObject".to_string()],
                serde_json::json!([
                    {"Fn::Sub": "arn:${AWS::Partition}:s3:::${ModelBucket}/${ModelKey}.checks.json"},
                    {"Fn::Sub": "arn:${AWS::Partition}:s3:::${ModelBucket}/${ModelKey}.checks/*"}
                ])
            ),
            (
                vec!["secretsmanager:GetSecretValue".to_string()],
                serde_json::json!({"Ref": "ApiKeySecret"})
            ),
        ]
    );

    // Its make target reuses the function's build and takes no ONNX Runtime.
    let makefile = std::fs::read_to_string(workspace().join("Makefile")).unwrap();
    let recipe = |target: &str| -> Vec<String> {
        // The rule whose targets (before its colon) include `target`.
        let mut lines = makefile.lines().skip_while(|l| {
            !l.split_once(':')
                .is_some_and(|(targets, _)| targets.split_whitespace().any(|t| t == target))
        });
        lines
            .next()
            .unwrap_or_else(|| panic!("Makefile has no {target}"));
        lines
            .take_while(|l| l.starts_with('\t'))
            .map(|l| l.trim().to_string())
            .collect()
    };
    assert_eq!(recipe("build-PreTrafficHook"), ["$(lambda-bootstrap)"]);
    // Managed Instances run the same package as on demand.
    assert_eq!(
        recipe("build-CatdogManagedFunction"),
        recipe("build-CatdogFunction")
    );
    let function = recipe("build-CatdogFunction");
    assert_eq!(function[0], "$(lambda-bootstrap)");
    assert!(function[1].contains("--lambda-lib"), "{function:?}");
}

/// The SAM CLI's own transform (its `samtranslator`, offline) of the
/// template with these parameter values: the CloudFormation SAM deploys.
fn sam_transformed(python: &Path, params: serde_json::Value) -> serde_json::Value {
    // `sam package` puts the code in S3 first: its URI stands in for `.`.
    let script = r#"
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse
class NoManagedPolicies:
    def load(self):
        return {}
tpl = yaml_parse(open(sys.argv[1]).read())
for r in tpl["Resources"].values():
    if r["Type"] == "AWS::Serverless::Function":
        r["Properties"]["CodeUri"] = "s3://packaged/code.zip"
print(json.dumps(transform(tpl, json.loads(sys.argv[2]), NoManagedPolicies()), default=str))
"#;
    let out = Command::new(python)
        .args(["-c", script, "template.yaml", &params.to_string()])
        .current_dir(workspace())
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .stdin(Stdio::null())
        .output()
        .expect("run the SAM transform");
    assert!(
        out.status.success(),
        "the SAM transform failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An image in ECR, as `ImageUri` names it.
const IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/catdog:v1";

#[test]
fn the_sam_transform_points_every_caller_at_the_alias_and_gates_it_with_the_hook() {
    const TEST: &str =
        "deploy::the_sam_transform_points_every_caller_at_the_alias_and_gates_it_with_the_hook";
    // The SAM CLI's virtualenv holds the translator SAM deploys with.
    let Some(python) = sam_cli()
        .and_then(|sam| sam.canonicalize().ok())
        .and_then(|sam| Some(sam.parent()?.join("python3")))
        .filter(|p| p.exists())
    else {
        return skip_or_fail(
            TEST,
            "the SAM CLI (and its samtranslator) is not installed (scripts/setup_sam.sh installs it)",
        );
    };
    let t = sam_transformed(
        &python,
        serde_json::json!({"ModelBucket": "models", "UploadsBucketName": "uploads",
                           "ModelSha256": "0".repeat(64), "ImageUri": IMAGE}),
    );
    // The rules reach CloudFormation, which checks them before it deploys.
    assert_eq!(t["Rules"], decoded_template()["Rules"]);
    let r = &t["Resources"];
    // SAM leaves conditions to CloudFormation: each way of running is in
    // the output, everything SAM makes of it under the Hosting's condition.
    let mut versions = Vec::new();
    for (name, hosting) in HOSTED {
        let alias = format!("{name}Aliaslive");
        let alias_ref = serde_json::json!({ "Ref": alias });
        assert_eq!(r[&alias]["Properties"]["Name"], "live", "{name}");
        for made in [
            name.to_string(),
            alias.clone(),
            format!("{name}Url"),
            format!("{name}Uploads"),
            format!("{name}Role"),
        ] {
            assert_eq!(r[&made]["Condition"], hosting, "{made}");
        }
        // The URL and the queue's event source mapping serve the alias.
        assert_eq!(
            r[format!("{name}Url")]["Properties"]["TargetFunctionArn"],
            alias_ref,
            "{name}"
        );
        let uploads = &r[format!("{name}Uploads")];
        assert_eq!(uploads["Type"], "AWS::Lambda::EventSourceMapping");
        assert_eq!(uploads["Properties"]["FunctionName"], alias_ref, "{name}");
        // Traffic moves only through CodeDeploy, after the hook.
        let update = &r[&alias]["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"];
        assert_eq!(
            update["BeforeAllowTrafficHook"],
            serde_json::json!({"Ref": "PreTrafficHook"}),
            "{name}"
        );
        let group = &r[format!("{name}DeploymentGroup")]["Properties"];
        assert_eq!(
            group["DeploymentConfigName"]["Fn::Sub"][1]["ConfigName"],
            "Canary10Percent5Minutes"
        );
        assert_eq!(group["AlarmConfiguration"]["Enabled"], true);
        assert_eq!(
            group["AlarmConfiguration"]["Alarms"],
            serde_json::json!([{"Name": {"Ref": "LiveErrorsAlarm"}}, {"Name": {"Ref": "LiveThrottlesAlarm"}}])
        );
        assert!(group["AutoRollbackConfiguration"]["Events"]
            .to_string()
            .contains("DEPLOYMENT_STOP_ON_ALARM"));
        let version = r
            .as_object()
            .unwrap()
            .iter()
            .find(|(k, v)| {
                v["Type"] == "AWS::Lambda::Version" && k.starts_with(&format!("{name}Version"))
            })
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| panic!("{name}: a published version"));
        versions.push((name, version));
    }
    // The role CodeDeploy invokes the hook with: invoking CodeDeployHook_* only.
    assert_eq!(
        r["CodeDeployServiceRole"]["Properties"]["ManagedPolicyArns"],
        serde_json::json!(["arn:aws:iam::aws:policy/service-role/AWSCodeDeployRoleForLambda"])
    );
    // The hook may invoke the version this deploy published, not the alias.
    let published = hosted(|f| {
        let (_, v) = versions.iter().find(|(n, _)| *n == f).unwrap();
        serde_json::json!({ "Ref": v })
    });
    let hook_policy = &r["PreTrafficHookRole"]["Properties"]["Policies"];
    assert!(
        hook_policy.to_string().contains(&published.to_string()),
        "{hook_policy}"
    );
    assert_eq!(
        r["PreTrafficHook"]["Properties"]["Environment"]["Variables"]["CATDOG_CHECK_FUNCTION"],
        published
    );
    // Provisioned concurrency: on demand only.
    assert_eq!(
        r["CatdogFunctionAliaslive"]["Properties"]["ProvisionedConcurrencyConfig"]["Fn::If"][0],
        "HasProvisionedConcurrency"
    );
    for other in [
        "CatdogSnapStartFunctionAliaslive",
        "CatdogManagedFunctionAliaslive",
    ] {
        assert!(
            r[other]["Properties"]
                .get("ProvisionedConcurrencyConfig")
                .is_none(),
            "{other}"
        );
    }
    // SnapStart: the image, snapshotted when a version is published, /tmp
    // at SnapStart's limit.
    let snap = &r["CatdogSnapStartFunction"]["Properties"];
    assert_eq!(snap["PackageType"], "Image");
    assert_eq!(snap["Code"], serde_json::json!({ "ImageUri": IMAGE }));
    assert_eq!(
        snap["SnapStart"],
        serde_json::json!({"ApplyOn": "PublishedVersions"})
    );
    assert_eq!(snap["EphemeralStorage"], serde_json::json!({"Size": 512}));
    // Managed Instances: the zip on the capacity provider's instances, so
    // many invokes at once per environment.
    let managed = &r["CatdogManagedFunction"]["Properties"];
    let config = &managed["CapacityProviderConfig"]["LambdaManagedInstancesCapacityProviderConfig"];
    assert_eq!(
        config["PerExecutionEnvironmentMaxConcurrency"],
        serde_json::json!({"Ref": "InvokesPerEnvironment"})
    );
    assert!(
        config["CapacityProviderArn"]["Fn::Sub"]
            .as_str()
            .unwrap()
            .ends_with(":capacity-provider:${CatdogCapacityProvider}"),
        "{config}"
    );
    let provider = &r["CatdogCapacityProvider"];
    assert_eq!(provider["Type"], "AWS::Lambda::CapacityProvider");
    assert_eq!(provider["Condition"], "ManagedInstances");
    let p = &provider["Properties"];
    assert_eq!(
        p["VpcConfig"]["SubnetIds"],
        serde_json::json!({"Ref": "SubnetIds"})
    );
    assert_eq!(
        p["CapacityProviderScalingConfig"]["MaxVCpuCount"],
        serde_json::json!({"Ref": "MaxVCpuCount"})
    );
    assert_eq!(
        p["InstanceRequirements"]["Architectures"],
        serde_json::json!([{"Ref": "Architecture"}])
    );

    // AllAtOnce when asked for.
    let now = sam_transformed(
        &python,
        serde_json::json!({"ModelBucket": "models", "UploadsBucketName": "uploads",
                           "ModelSha256": "0".repeat(64), "DeploymentType": "AllAtOnce"}),
    );
    assert_eq!(
        now["Resources"]["CatdogFunctionDeploymentGroup"]["Properties"]["DeploymentConfigName"]
            ["Fn::Sub"][1]["ConfigName"],
        "AllAtOnce"
    );
}

/// The answers' numbers, as the f32 the model computed (the JSON of the
/// Lambda answer and of `predict --json` print it with different digits).
fn f32_of(v: &serde_json::Value) -> f32 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")) as f32
}

/// The package that ships is the one tested: `sam build` (the real SAM CLI,
/// its make target, cargo-lambda's release build), then the built folder's
/// `bootstrap` — with the ONNX Runtime library beside it, needing no newer
/// glibc than AL2023's — under cargo-lambda's emulator, in an environment
/// holding only the Lambda variables, the template's variables and S3
/// settings, with the model on an S3 server. It answers
/// `events/function-url.json` as `catdog predict --json` answers its photo.
///
/// The first build takes minutes (a release build, through zig);
/// later ones reuse target/ and take seconds.
#[tokio::test(flavor = "multi_thread")]
async fn sam_build_output_answers_the_function_url_event_like_predict() {
    const TEST: &str = "deploy::sam_build_output_answers_the_function_url_event_like_predict";
    let Some(sam) = sam_cli() else {
        return skip_or_fail(
            TEST,
            "the SAM CLI is not installed (scripts/setup_sam.sh installs it; make test runs that)",
        );
    };
    let cargo_lambda = crate::support::emulator::cargo_lambda();
    if !runs(&cargo_lambda, &["lambda", "--version"]) {
        return skip_or_fail(
            TEST,
            "cargo-lambda is not installed (scripts/setup.sh --test-tools installs it; make test runs that)",
        );
    }

    let build_dir = target_dir().join("sam-build");
    let took = sam_build(&sam, &cargo_lambda, &build_dir, "x86_64");
    eprintln!("sam build took {:.1} s", took.as_secs_f64());
    let artifacts = build_dir.join("CatdogFunction");
    let bootstrap = artifacts.join("bootstrap");
    assert!(
        bootstrap.is_file(),
        "no bootstrap in {}",
        artifacts.display()
    );
    let lib = packaged_library(&artifacts);
    // Built in the checkout (samconfig.toml's build_in_source), not in a copy
    // of it: the packaged bootstrap is cargo-lambda's output here.
    assert!(
        std::fs::read(&bootstrap).unwrap()
            == std::fs::read(target_dir().join("lambda/x86_64/catdog/bootstrap")).unwrap(),
        "the bootstrap was not built in the checkout's target/ (samconfig.toml build_in_source)"
    );
    // The PreTraffic hook: the same bootstrap, alone (it runs no model).
    let hook_dir = build_dir.join("PreTrafficHook");
    let hook_files: Vec<String> = std::fs::read_dir(&hook_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(hook_files, ["bootstrap"], "{}", hook_dir.display());
    assert!(
        std::fs::read(hook_dir.join("bootstrap")).unwrap() == std::fs::read(&bootstrap).unwrap(),
        "the hook's bootstrap is not the function's"
    );

    for file in [&bootstrap, &lib] {
        let needs = glibc_needed(file);
        let dotted = needs.iter().map(u32::to_string).collect::<Vec<_>>();
        eprintln!("{} needs GLIBC_{}", file.display(), dotted.join("."));
        assert!(
            needs.as_slice() <= AL2023_GLIBC.as_slice(),
            "{} needs glibc {needs:?}, newer than Amazon Linux 2023's {AL2023_GLIBC:?}",
            file.display()
        );
    }

    // The model on the simulated S3 (s3s-fs behind the bandwidth/first-byte proxy).
    let Some((_s3, endpoint)) = s3s(TEST, S3SimOptions::default()).await else {
        return;
    };
    let model = std::fs::read(fixture("tiny_torch_nchw.onnx")).unwrap();
    let digest = catdog::model::source::sha256_hex(&model);
    s3_put(&endpoint, "catdog-models", "models/catdog.onnx", model).await;

    let (_emulator, port) = crate::support::emulator::start().await;
    let scratch = std::env::temp_dir().join(format!("catdog-sam-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let log = scratch.join("bootstrap.log");
    // `env -i`: only what Lambda gives a function (its variables, the
    // template's, credentials and region), plus the loopback S3 endpoint.
    let boot = Proc {
        child: Command::new(&bootstrap)
            .env_clear()
            .envs(crate::support::emulator::runtime_env(port))
            .env("LAMBDA_TASK_ROOT", &artifacts)
            .env("_HANDLER", "bootstrap")
            .env("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin")
            .envs(function_environment(&[
                ("ModelBucket", "catdog-models"),
                ("ModelSha256", &digest),
                // Required by the template (no default); this event never
                // reaches the uploads bucket, so any name does.
                ("UploadsBucketName", "catdog-uploads"),
            ]))
            .envs(s3_env(&endpoint))
            .current_dir(&artifacts)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start the built bootstrap"),
        name: "sam-built bootstrap".into(),
    };
    let event = workspace().join("events/function-url.json");
    let answer = invoke_event(&cargo_lambda, port, &event).await;
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        answer["statusCode"],
        200,
        "{answer}\nbootstrap log:\n{}",
        logged()
    );
    let got: serde_json::Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(got["model"]["uri"], "s3://catdog-models/models/catdog.onnx");
    assert_eq!(got["model"]["sha256"], digest.as_str());

    // It loaded the library packaged beside it, nothing of this machine's.
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", boot.child.id())).unwrap();
    let lib = lib.canonicalize().unwrap();
    assert!(
        maps.contains(lib.to_str().unwrap()),
        "the bootstrap did not map {}",
        lib.display()
    );
    assert!(
        !maps
            .lines()
            .any(|l| l.contains("libonnxruntime") && !l.contains(lib.to_str().unwrap())),
        "another ONNX Runtime library is mapped too"
    );
    drop(boot);

    // The packaged hook, in as bare an environment and with no ONNX Runtime
    // beside it, runs as the hook (its Handler): an event that is not
    // CodeDeploy's is refused by name.
    let hook_log = scratch.join("hook.log");
    let _hook = Proc {
        child: Command::new(hook_dir.join("bootstrap"))
            .env_clear()
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt/catdog"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "catdog")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("LAMBDA_TASK_ROOT", &hook_dir)
            .env("_HANDLER", catdog::settings::PRETRAFFIC_HANDLER)
            .env("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin")
            .envs(s3_env(&endpoint))
            .current_dir(&hook_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&hook_log).unwrap())
            .spawn()
            .expect("start the built hook"),
        name: "sam-built hook".into(),
    };
    let refused = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{port}/2015-03-31/functions/catdog/invocations"
        ))
        .json(&serde_json::json!({"hello": "world"}))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        refused.contains("catdog.NotALifecycleEvent"),
        "{refused}\nhook log:\n{}",
        std::fs::read_to_string(&hook_log).unwrap_or_default()
    );

    // The same photo and model through `catdog predict --json` (debug build).
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&event).unwrap()).unwrap();
    use base64::Engine;
    let photo = scratch.join("event-photo.jpg");
    std::fs::write(
        &photo,
        base64::engine::general_purpose::STANDARD
            .decode(v["body"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let out = succeed(
        catdog_command()
            .args(["predict", "--json", "--model"])
            .arg(fixture("tiny_torch_nchw.onnx"))
            .arg(&photo),
    );
    let want: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let _ = std::fs::remove_dir_all(&scratch);
    assert_eq!(got["label"], want["label"], "lambda {got}\npredict {want}");
    assert_eq!(
        f32_of(&got["confidence"]),
        f32_of(&want["confidence"]),
        "lambda {got}\npredict {want}"
    );
    for (label, score) in want["scores"].as_object().unwrap() {
        assert_eq!(f32_of(&got["scores"][label]), f32_of(score), "{label}");
    }
}
