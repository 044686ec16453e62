//! Which tools go to Ollama: the client's tools, already in Ollama's shape, narrowed by the
//! client's `tool_choice` (chat and Responses each read their own `tool_choice` shape into a
//! [`ToolChoice`]).

use serde_json::Value;

use crate::error::InvalidRequest;

/// What the client's `tool_choice` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToolChoice {
    /// The model decides (also when `tool_choice` is absent).
    Auto,
    /// Ollama cannot force a call; the tools are sent and the model decides.
    Required,
    /// No tool may be called: none are sent.
    None,
    /// This function only: the closest Ollama comes to forcing it is being offered no other.
    Function(String),
}

/// The tools to send Ollama for `choice`, from `tools` (each
/// `{"type":"function","function":{"name":…}}`); `None` when there are none to send.
pub(crate) fn select_tools(
    tools: Vec<Value>,
    choice: ToolChoice,
) -> Result<Option<Vec<Value>>, InvalidRequest> {
    if tools.is_empty() {
        return Ok(None);
    }
    match choice {
        ToolChoice::Auto | ToolChoice::Required => Ok(Some(tools)),
        ToolChoice::None => Ok(None),
        ToolChoice::Function(name) => {
            let chosen: Vec<Value> = tools
                .into_iter()
                .filter(|t| t.pointer("/function/name").and_then(Value::as_str) == Some(&name))
                .collect();
            if chosen.is_empty() {
                return Err(InvalidRequest::new(
                    format!("tool_choice names `{name}`, which is not among `tools`."),
                    "tool_choice",
                ));
            }
            Ok(Some(chosen))
        }
    }
}
