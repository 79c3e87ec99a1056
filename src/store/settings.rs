//! Settings that can change while the gateway runs (`/admin/settings`). Their values at start
//! come from the configuration; changes made through the admin API are kept as overrides (and
//! saved with the data), so the effective value is "configuration, then override". Request
//! code reads them through `Gateway::runtime()` at request time.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::config::{ReasoningOutput, SearchInfoMode, Settings, ThinkingFormat};

/// The effective runtime settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    pub reasoning_output: ReasoningOutput,
    pub thinking_format: ThinkingFormat,
    pub search_info_mode: SearchInfoMode,
    pub simple_model_map: bool,
    pub upstream_retries: usize,
    pub max_in_flight_per_identity: usize,
    pub key_rpm_limit: u32,
    pub key_max_concurrent: u32,
}

/// Each setting: its API name, the configuration variable(s) it starts from, and what it takes.
pub const FIELDS: &[(&str, &str, &str)] = &[
    (
        "think_output",
        "OUTPUT_THINK / THINK_OUTPUT_FORMAT",
        "reasoning_content | think_tags | hidden",
    ),
    ("thinking_format", "THINKING_FORMAT", "detail | summary"),
    ("search_info_mode", "SEARCH_INFO_MODE", "table | text"),
    ("simple_model_map", "SIMPLE_MODEL_MAP", "true | false"),
    ("upstream_retries", "UPSTREAM_RETRIES", "0..10"),
    (
        "max_in_flight_per_identity",
        "MAX_IN_FLIGHT_PER_IDENTITY",
        "0 (no cap)..100000",
    ),
    ("key_rpm_limit", "KEY_RPM_LIMIT", "0 (none)..1000000"),
    (
        "key_max_concurrent",
        "KEY_MAX_CONCURRENT",
        "0 (none)..100000",
    ),
];

pub fn think_output_str(r: ReasoningOutput) -> &'static str {
    match r {
        ReasoningOutput::Field => "reasoning_content",
        ReasoningOutput::Tags => "think_tags",
        ReasoningOutput::Hidden => "hidden",
    }
}

impl Runtime {
    pub fn from_settings(s: &Settings) -> Self {
        Runtime {
            reasoning_output: s.reasoning_output,
            thinking_format: s.thinking_format,
            search_info_mode: s.search_info_mode,
            simple_model_map: s.simple_model_map,
            upstream_retries: s.upstream_retries,
            max_in_flight_per_identity: s.max_in_flight_per_identity,
            key_rpm_limit: s.key_rpm_limit,
            key_max_concurrent: s.key_max_concurrent,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "think_output": think_output_str(self.reasoning_output),
            "thinking_format": self.thinking_format.as_str(),
            "search_info_mode": match self.search_info_mode {
                SearchInfoMode::Table => "table",
                SearchInfoMode::Text => "text",
            },
            "simple_model_map": self.simple_model_map,
            "upstream_retries": self.upstream_retries,
            "max_in_flight_per_identity": self.max_in_flight_per_identity,
            "key_rpm_limit": self.key_rpm_limit,
            "key_max_concurrent": self.key_max_concurrent,
        })
    }

    /// Applies one validated value; the message names the setting and what it takes.
    fn set(&mut self, name: &str, v: &Value) -> Result<(), String> {
        let bad = || {
            let takes = FIELDS.iter().find(|f| f.0 == name).map_or("", |f| f.2);
            format!("'{name}' must be {takes}; got {v}.")
        };
        let num = |max: u64| v.as_u64().filter(|n| *n <= max).ok_or_else(bad);
        match name {
            "think_output" => {
                self.reasoning_output = match v.as_str() {
                    Some("reasoning_content") => ReasoningOutput::Field,
                    Some("think_tags") => ReasoningOutput::Tags,
                    Some("hidden") => ReasoningOutput::Hidden,
                    _ => return Err(bad()),
                }
            }
            "thinking_format" => {
                self.thinking_format = match v.as_str() {
                    Some("detail") => ThinkingFormat::Detail,
                    Some("summary") => ThinkingFormat::Summary,
                    _ => return Err(bad()),
                }
            }
            "search_info_mode" => {
                self.search_info_mode = match v.as_str() {
                    Some("table") => SearchInfoMode::Table,
                    Some("text") => SearchInfoMode::Text,
                    _ => return Err(bad()),
                }
            }
            "simple_model_map" => self.simple_model_map = v.as_bool().ok_or_else(bad)?,
            "upstream_retries" => self.upstream_retries = num(10)? as usize,
            "max_in_flight_per_identity" => {
                self.max_in_flight_per_identity = num(100_000)? as usize
            }
            "key_rpm_limit" => self.key_rpm_limit = num(1_000_000)? as u32,
            "key_max_concurrent" => self.key_max_concurrent = num(100_000)? as u32,
            other => {
                let names: Vec<&str> = FIELDS.iter().map(|f| f.0).collect();
                return Err(format!(
                    "Unknown setting '{other}'; known: {}.",
                    names.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// Overrides by name, as changed through the admin API (and saved).
pub type Overrides = BTreeMap<String, Value>;

/// The effective settings: the configuration's, then each override.
pub fn effective(base: &Runtime, overrides: &Overrides) -> Result<Runtime, String> {
    let mut r = base.clone();
    for (k, v) in overrides {
        r.set(k, v)?;
    }
    Ok(r)
}

/// Applies a PATCH object to `overrides`: a value sets an override, `null` removes it (back
/// to the configured value). All or nothing: an invalid field changes nothing.
pub fn patch(
    base: &Runtime,
    overrides: &Overrides,
    body: &Map<String, Value>,
) -> Result<(Overrides, Runtime), String> {
    let mut next = overrides.clone();
    for (k, v) in body {
        if v.is_null() {
            if !FIELDS.iter().any(|f| f.0 == k) {
                return Err(format!("Unknown setting '{k}'."));
            }
            next.remove(k);
        } else {
            next.insert(k.clone(), v.clone());
        }
    }
    let r = effective(base, &next)?;
    Ok((next, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Runtime {
        Runtime {
            reasoning_output: ReasoningOutput::Field,
            thinking_format: ThinkingFormat::Detail,
            search_info_mode: SearchInfoMode::Table,
            simple_model_map: false,
            upstream_retries: 2,
            max_in_flight_per_identity: 0,
            key_rpm_limit: 0,
            key_max_concurrent: 0,
        }
    }

    #[test]
    fn patch_sets_and_resets() {
        let b = base();
        let body = json!({"think_output": "think_tags", "upstream_retries": 4});
        let (o, r) = patch(&b, &Overrides::new(), body.as_object().unwrap()).unwrap();
        assert_eq!(r.reasoning_output, ReasoningOutput::Tags);
        assert_eq!(r.upstream_retries, 4);
        let body = json!({"think_output": null});
        let (o, r) = patch(&b, &o, body.as_object().unwrap()).unwrap();
        assert_eq!(r.reasoning_output, ReasoningOutput::Field);
        assert_eq!(o.len(), 1);
        assert_eq!(r.to_json()["upstream_retries"], 4);
    }

    #[test]
    fn invalid_values_change_nothing_and_name_the_field() {
        let b = base();
        for body in [
            json!({"think_output": "loud"}),
            json!({"upstream_retries": 99}),
            json!({"simple_model_map": "yes"}),
            json!({"nope": 1}),
            json!({"nope": null}),
        ] {
            let e = patch(&b, &Overrides::new(), body.as_object().unwrap()).unwrap_err();
            let name = body.as_object().unwrap().keys().next().unwrap().clone();
            assert!(e.contains(&name), "{e}");
        }
    }
}
