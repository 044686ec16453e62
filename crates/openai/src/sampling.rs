//! The sampling fields the OpenAI requests share, checked and written into Ollama's `options`
//! by one translator, and the one reading of a reasoning effort as Ollama's `think`.

use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::error::InvalidRequest;

/// OpenAI accepts at most this many stop sequences.
const MAX_STOP_SEQUENCES: usize = 4;

/// `stop`: one string or a list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StopSequences {
    /// One sequence.
    One(String),
    /// Several sequences.
    Many(Vec<String>),
}

/// A request's completion budget and sampling fields, moved out of it for
/// [`Sampling::write_options`]; chat, legacy completions and Responses share them.
#[derive(Debug, Default)]
pub(crate) struct Sampling {
    /// The client's completion budget, Ollama's `num_predict`.
    pub(crate) max_tokens: Option<u64>,
    pub(crate) temperature: Option<f64>,
    pub(crate) top_p: Option<f64>,
    pub(crate) presence_penalty: Option<f64>,
    pub(crate) frequency_penalty: Option<f64>,
    pub(crate) seed: Option<i64>,
    pub(crate) stop: Option<StopSequences>,
}

impl Sampling {
    /// Checks each field against OpenAI's range and writes it into Ollama's `options`, where
    /// it replaces an entry of the same name.
    pub(crate) fn write_options(
        self,
        options: &mut Map<String, Value>,
    ) -> Result<(), InvalidRequest> {
        if let Some(n) = self.max_tokens {
            options.insert("num_predict".into(), Value::from(n));
        }
        set_number(options, "temperature", self.temperature, 0.0..=2.0)?;
        set_number(options, "top_p", self.top_p, 0.0..=1.0)?;
        set_number(
            options,
            "presence_penalty",
            self.presence_penalty,
            -2.0..=2.0,
        )?;
        set_number(
            options,
            "frequency_penalty",
            self.frequency_penalty,
            -2.0..=2.0,
        )?;
        if let Some(seed) = self.seed {
            options.insert("seed".into(), Value::from(seed));
        }
        match self.stop {
            Some(StopSequences::One(stop)) => {
                options.insert("stop".into(), Value::from(vec![stop]));
            }
            Some(StopSequences::Many(stops)) => {
                if stops.len() > MAX_STOP_SEQUENCES {
                    return Err(InvalidRequest::new(
                        format!("`stop` takes at most {MAX_STOP_SEQUENCES} sequences."),
                        "stop",
                    ));
                }
                options.insert("stop".into(), Value::from(stops));
            }
            None => {}
        }
        Ok(())
    }
}

fn set_number(
    options: &mut Map<String, Value>,
    name: &'static str,
    value: Option<f64>,
    range: std::ops::RangeInclusive<f64>,
) -> Result<(), InvalidRequest> {
    if let Some(v) = value {
        if !range.contains(&v) {
            return Err(InvalidRequest::new(
                format!(
                    "`{name}` must be between {} and {}.",
                    range.start(),
                    range.end()
                ),
                name,
            ));
        }
        options.insert(name.into(), Value::from(v));
    }
    Ok(())
}

/// Ollama's `think` for an OpenAI `reasoning_effort` (chat) or `reasoning.effort`
/// (Responses): `none` turns thinking off, `minimal` is `low`, and the levels above `high`
/// (`xhigh`, `max`) are `high`, the highest level every Ollama that takes levels knows.
pub(crate) fn think_for_effort(effort: &str, param: &str) -> Result<Value, InvalidRequest> {
    match effort {
        "none" => Ok(Value::from(false)),
        "minimal" | "low" => Ok(Value::from("low")),
        "medium" => Ok(Value::from("medium")),
        "high" | "xhigh" | "max" => Ok(Value::from("high")),
        other => Err(InvalidRequest::new(
            format!(
                "Unknown reasoning effort `{other}`; use none, minimal, low, medium, high, xhigh or max."
            ),
            param,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_values_and_long_stop_lists_are_refused_with_their_field() {
        let cases = [
            (
                Sampling {
                    temperature: Some(99.0),
                    ..Sampling::default()
                },
                "temperature",
            ),
            (
                Sampling {
                    top_p: Some(-0.1),
                    ..Sampling::default()
                },
                "top_p",
            ),
            (
                Sampling {
                    frequency_penalty: Some(2.5),
                    ..Sampling::default()
                },
                "frequency_penalty",
            ),
            (
                Sampling {
                    stop: Some(StopSequences::Many(vec!["a".into(); 5])),
                    ..Sampling::default()
                },
                "stop",
            ),
        ];
        for (sampling, field) in cases {
            let error = sampling.write_options(&mut Map::new()).unwrap_err();
            assert_eq!(error.param.as_deref(), Some(field));
        }
    }

    #[test]
    fn values_in_range_replace_what_the_options_had() {
        let mut options = Map::new();
        options.insert("temperature".into(), Value::from(1.5));
        Sampling {
            temperature: Some(0.5),
            seed: Some(7),
            stop: Some(StopSequences::One("END".into())),
            ..Sampling::default()
        }
        .write_options(&mut options)
        .unwrap();
        assert_eq!(options["temperature"], 0.5);
        assert_eq!(options["seed"], 7);
        assert_eq!(options["stop"], serde_json::json!(["END"]));
    }

    #[test]
    fn reasoning_efforts_map_to_levels_every_ollama_knows() {
        for (effort, think) in [
            ("none", Value::from(false)),
            ("minimal", Value::from("low")),
            ("low", Value::from("low")),
            ("medium", Value::from("medium")),
            ("high", Value::from("high")),
            ("xhigh", Value::from("high")),
            ("max", Value::from("high")),
        ] {
            assert_eq!(think_for_effort(effort, "reasoning.effort"), Ok(think));
        }
        let error = think_for_effort("ultra", "reasoning.effort").unwrap_err();
        assert_eq!(error.param.as_deref(), Some("reasoning.effort"));
    }
}
