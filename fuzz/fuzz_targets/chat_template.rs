//! Client-chosen chat messages through the chat templates the server renders: the default one
//! and the shapes popular models ship (ChatML, Llama 3, Mistral's role-alternation check with
//! `raise_exception`). Any messages give a prompt or a render error, never a panic.
//!
//! The template source itself comes from the model directory, which only the admin picks, so it
//! is fixed here; a template from a hostile file could loop for as long as minijinja lets it.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::{arbitrary, fuzz_target};
use sluice_server::model::chat::{ChatMessage, ChatTemplate};
use sluice_server::model::tiny::DEFAULT_CHAT_TEMPLATE;

const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
const MISTRAL: &str = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

fn templates() -> &'static [ChatTemplate] {
    static T: OnceLock<Vec<ChatTemplate>> = OnceLock::new();
    T.get_or_init(|| {
        [DEFAULT_CHAT_TEMPLATE, CHATML, LLAMA3, MISTRAL]
            .iter()
            .map(|src| ChatTemplate::new(src, "<s>", "</s>", "fuzz").expect("template compiles"))
            .collect()
    })
}

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    template: u8,
    messages: Vec<(String, String)>,
}

fuzz_target!(|input: Input| {
    let all = templates();
    let tmpl = &all[usize::from(input.template) % all.len()];
    let messages: Vec<ChatMessage> = input
        .messages
        .into_iter()
        .take(32)
        .map(|(role, content)| ChatMessage { role, content })
        .collect();
    if let Ok(prompt) = tmpl.render(&messages) {
        for m in &messages {
            // Every template here copies each message's content into the prompt (Llama 3 trims it).
            assert!(
                prompt.contains(m.content.trim()),
                "content dropped from {prompt:?}"
            );
        }
    }
});
