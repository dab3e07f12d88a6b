//! The OpenAPI document's own rules, checked without a server (scripts/api-contract.sh runs
//! schemathesis against a real one): every operation declares what every route can answer,
//! its path parameters by the names of its path template, and a unique operationId.

use std::collections::BTreeSet;

use serde_json::Value;
use utoipa::OpenApi;

use super::ApiDoc;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

fn document() -> Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap()
}

/// `(method, path, operation)` for every operation.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                out.push((m.to_uppercase(), path.clone(), op.clone()));
            }
        }
    }
    assert!(out.len() >= 30, "only {} operations", out.len());
    out
}

fn template_names(path: &str) -> BTreeSet<String> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_operation_declares_401_and_500_with_the_error_body() {
    let doc = document();
    for (m, path, op) in operations(&doc) {
        for status in ["401", "500"] {
            let schema = &op["responses"][status]["content"]["application/json"]["schema"];
            assert_eq!(
                schema["$ref"], "#/components/schemas/ApiError",
                "{m} {path}: {status} is not declared with the ApiError body"
            );
        }
    }
}

#[test]
fn every_error_answer_carries_the_error_body() {
    let doc = document();
    for (m, path, op) in operations(&doc) {
        for (status, response) in op["responses"].as_object().unwrap() {
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ApiError",
                    "{m} {path} {status}"
                );
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| d.starts_with('`')),
                    "{m} {path} {status}: the description starts with the error's `code`"
                );
            }
        }
    }
}

#[test]
fn path_parameters_are_exactly_those_of_the_path_template() {
    let doc = document();
    for (m, path, op) in operations(&doc) {
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let declared: BTreeSet<String> = params
            .iter()
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(declared, template_names(&path), "{m} {path}");
        for p in &params {
            if p["in"] == "path" {
                assert_eq!(p["required"], true, "{m} {path}: {p}");
            }
            assert!(
                p.get("schema").is_some() || p.get("content").is_some(),
                "{m} {path}: parameter without a schema: {p}"
            );
        }
    }
}

#[test]
fn parameters_and_bodies_get_their_extractors_answers() {
    let doc = document();
    for (m, path, op) in operations(&doc) {
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let responses = &op["responses"];
        if !params.is_empty() || op.get("requestBody").is_some() {
            assert!(responses.get("400").is_some(), "{m} {path}: no 400");
        }
        let json_body = op["requestBody"]["content"]
            .get("application/json")
            .is_some();
        for status in ["413", "415", "422"] {
            assert_eq!(
                responses.get(status).is_some(),
                json_body,
                "{m} {path}: {status} goes with a JSON body and only with one"
            );
        }
        if !path.contains('{') && params.is_empty() && op.get("requestBody").is_none() {
            assert!(responses.get("404").is_none(), "{m} {path}: 404 of what?");
        }
    }
}

#[test]
fn the_query_parameters_the_handlers_read_are_declared_in_the_query() {
    let doc = document();
    let query = |path: &str, method: &str| -> BTreeSet<(String, bool)> {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_owned(),
                    p["required"] == true,
                )
            })
            .collect()
    };
    let set = |items: &[(&str, bool)]| -> BTreeSet<(String, bool)> {
        items.iter().map(|(n, r)| (n.to_string(), *r)).collect()
    };
    assert_eq!(
        query("/v1/replicas/{id}/exec", "get"),
        set(&[
            ("command", true),
            ("tty", false),
            ("rows", false),
            ("cols", false)
        ])
    );
    assert_eq!(
        query("/v1/logs/{service}", "get"),
        set(&[
            ("follow", false),
            ("tail", false),
            ("previous", false),
            ("since_ms", false),
            ("until_ms", false),
            ("run", false)
        ])
    );
    assert_eq!(
        query("/v1/events", "get"),
        set(&[
            ("since", false),
            ("since_ms", false),
            ("until_ms", false),
            ("service", false),
            ("type", false)
        ])
    );
    assert_eq!(
        query("/v1/services/{name}/history", "get"),
        set(&[("window_s", false)])
    );
    assert_eq!(query("/v1/nodes/{id}", "delete"), set(&[("force", false)]));
    assert_eq!(query("/v1/replicas", "get"), set(&[("service", false)]));
    assert_eq!(query("/v1/stats", "get"), set(&[("service", false)]));
    assert_eq!(
        query("/v1/images/import", "post"),
        set(&[("rootfs", false)])
    );
    // The command is JSON, and the document says so.
    let command = doc["paths"]["/v1/replicas/{id}/exec"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "command")
        .unwrap()
        .clone();
    assert_eq!(
        command["content"]["application/json"]["schema"]["type"],
        "array"
    );
    assert!(command.get("schema").is_none(), "{command}");
}

#[test]
fn operation_ids_are_unique_and_refs_resolve() {
    let doc = document();
    let mut ids = BTreeSet::new();
    for (m, path, op) in operations(&doc) {
        let id = op["operationId"].as_str().unwrap_or_default().to_owned();
        assert!(!id.is_empty(), "{m} {path}: no operationId");
        assert!(ids.insert(id.clone()), "{m} {path}: operationId {id} twice");
        let tags = op["tags"].as_array().cloned().unwrap_or_default();
        assert!(
            tags.iter()
                .all(|t| t.as_str().is_some_and(|t| !t.contains("::"))),
            "{m} {path}: tags {tags:?} are module paths"
        );
    }
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push(r.clone()),
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "{r} is not in the components"
        );
    }
}

#[test]
fn request_schemas_say_the_limits_the_server_enforces() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["ScaleRequest"]["properties"]["replicas"]["maximum"],
        dash_core::config_parser::MAX_REPLICAS
    );
    assert_eq!(
        schemas["TokenRequest"]["properties"]["ttl_s"]["maximum"],
        10 * 365 * 24 * 3600
    );
    assert_eq!(schemas["TokenRequest"]["properties"]["ttl_s"]["minimum"], 1);
    assert_eq!(
        schemas["PullRequest"]["properties"]["reference"]["pattern"],
        dash_core::api::patterns::IMAGE_REFERENCE
    );
    assert_eq!(
        schemas["LoginRequest"]["properties"]["registry"]["pattern"],
        dash_core::api::patterns::REGISTRY
    );
    let labels = &schemas["LabelRequest"]["properties"];
    assert_eq!(
        labels["set"]["propertyNames"]["pattern"],
        super::super::nodes::LABEL_KEY
    );
    assert_eq!(
        labels["remove"]["items"]["pattern"],
        super::super::nodes::LABEL_KEY
    );
    // u64 bounds are written exactly (a float would round them up past u64::MAX).
    let since = doc["paths"]["/v1/events"]["get"]["parameters"][0]["schema"].clone();
    assert_eq!(since["maximum"], u64::MAX, "{since}");
    assert!(since.get("format").is_none(), "int64 is signed: {since}");
}
