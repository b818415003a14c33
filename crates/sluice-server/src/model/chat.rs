//! Chat templates: the Jinja template a model ships in `tokenizer_config.json`, rendered with
//! minijinja, or the documented default ([`super::tiny::DEFAULT_CHAT_TEMPLATE`]) otherwise.

use std::path::Path;

use minijinja::{Environment, ErrorKind, context};
use serde::{Deserialize, Serialize};

/// One chat message as the OpenAI API sends it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// A compiled chat template plus the special tokens templates refer to.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
    /// Where the template came from, for `/v1/models` and logs.
    pub origin: String,
}

impl ChatTemplate {
    pub fn new(source: &str, bos: &str, eos: &str, origin: &str) -> Result<Self, String> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| format!("failed to compile chat template from {origin}: {e}"))?;
        Ok(Self {
            env,
            bos: bos.into(),
            eos: eos.into(),
            origin: origin.into(),
        })
    }

    pub fn default_template(bos: &str, eos: &str) -> Self {
        Self::new(super::tiny::DEFAULT_CHAT_TEMPLATE, bos, eos, "default")
            .expect("the default chat template compiles")
    }

    /// Reads `chat_template` (a string, or a list of named templates where `default` wins) and
    /// the bos/eos strings from a `tokenizer_config.json`. `Ok(None)` when it has no template.
    pub fn from_tokenizer_config(path: &Path) -> Result<Option<Self>, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("failed to read {}: {e}", path.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("failed to parse {}: {e}", path.display()))?;
        let token = |key: &str| -> String {
            match &json[key] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Object(o) => o
                    .get("content")
                    .and_then(|c| c.as_str())
                    .unwrap_or_default()
                    .to_string(),
                _ => String::new(),
            }
        };
        let template = match &json["chat_template"] {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(list) => list
                .iter()
                .find(|t| t["name"] == "default")
                .or_else(|| list.first())
                .and_then(|t| t["template"].as_str())
                .map(str::to_string),
            _ => None,
        };
        template
            .map(|t| {
                Self::new(
                    &t,
                    &token("bos_token"),
                    &token("eos_token"),
                    &path.display().to_string(),
                )
            })
            .transpose()
    }

    /// Renders the conversation with the generation prompt appended.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String, String> {
        let tmpl = self.env.get_template("chat").map_err(|e| e.to_string())?;
        tmpl.render(context! {
            messages => messages,
            add_generation_prompt => true,
            bos_token => self.bos,
            eos_token => self.eos,
        })
        .map_err(|e| format!("failed to render chat template: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs() -> Vec<ChatMessage> {
        vec![
            ChatMessage {
                role: "system".into(),
                content: "Be brief.".into(),
            },
            ChatMessage {
                role: "user".into(),
                content: "Hi".into(),
            },
        ]
    }

    #[test]
    fn default_template_renders_roles_and_generation_prompt() {
        let t = ChatTemplate::default_template("<s>", "</s>");
        assert_eq!(
            t.render(&msgs()).unwrap(),
            "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\n"
        );
    }

    #[test]
    fn hf_style_template_with_python_methods_and_exceptions() {
        let src = "{{ bos_token }}{% for m in messages %}{% if m.role not in ['user','system'] %}{{ raise_exception('bad role') }}{% endif %}[{{ m.role.upper() }}] {{ m.content.strip() }}\n{% endfor %}";
        let t = ChatTemplate::new(src, "<s>", "</s>", "test").unwrap();
        assert_eq!(
            t.render(&msgs()).unwrap(),
            "<s>[SYSTEM] Be brief.\n[USER] Hi\n"
        );
        let bad = vec![ChatMessage {
            role: "tool".into(),
            content: "x".into(),
        }];
        assert!(t.render(&bad).unwrap_err().contains("bad role"));
    }
}
