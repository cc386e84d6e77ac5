//! A run's conversation with its model, in our own words: the agents speak this, and only
//! this module knows the vendor's message types.

use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestAssistantMessageContent,
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestSystemMessageContent, ChatCompletionRequestToolMessage,
    ChatCompletionRequestToolMessageContent, ChatCompletionRequestUserMessage,
    ChatCompletionRequestUserMessageContent,
};

use super::Completion;

/// The messages of one run so far: instructions, the task, and each turn's tool calls and
/// results.
#[derive(Debug, Clone, Default)]
pub struct Conversation {
    messages: Vec<ChatCompletionRequestMessage>,
}

impl Conversation {
    /// A conversation that starts with `instructions` (left out when blank) and `task`.
    pub fn new(instructions: &str, task: String) -> Self {
        let mut messages = Vec::with_capacity(4);
        if !instructions.trim().is_empty() {
            messages.push(ChatCompletionRequestMessage::System(
                ChatCompletionRequestSystemMessage {
                    content: ChatCompletionRequestSystemMessageContent::Text(
                        instructions.to_owned(),
                    ),
                    name: None,
                },
            ));
        }
        messages.push(ChatCompletionRequestMessage::User(
            ChatCompletionRequestUserMessage {
                content: ChatCompletionRequestUserMessageContent::Text(task),
                name: None,
            },
        ));
        Self { messages }
    }

    /// Adds the model's turn: its text, if any, and the tool calls it asked for.
    pub fn push_assistant(&mut self, completion: &Completion) {
        self.messages.push(ChatCompletionRequestMessage::Assistant(
            ChatCompletionRequestAssistantMessage {
                content: completion
                    .content
                    .clone()
                    .filter(|c| !c.is_empty())
                    .map(ChatCompletionRequestAssistantMessageContent::Text),
                tool_calls: Some(completion.raw_tool_calls.clone()),
                ..Default::default()
            },
        ));
    }

    /// Adds the result of tool call `call_id`, as the text the model reads.
    pub fn push_tool_result(&mut self, call_id: String, content: String) {
        self.messages.push(ChatCompletionRequestMessage::Tool(
            ChatCompletionRequestToolMessage {
                content: ChatCompletionRequestToolMessageContent::Text(content),
                tool_call_id: call_id,
            },
        ));
    }

    /// The messages, in the vendor's types, for a request.
    pub(super) fn messages(&self) -> &[ChatCompletionRequestMessage] {
        &self.messages
    }
}
