//! Anthropic Messages clients served by Gemini/Vertex and Bedrock Converse, by chaining two
//! directions through OpenAI chat: the request is translated to OpenAI chat first (asking for
//! stream usage, which becomes `message_delta.usage`), then to the backend's API; answers,
//! errors and streams come back the same way.

use super::{openai_to_bedrock::converse_path, openai_to_gemini::gemini_path, *};

/// Anthropic Messages → OpenAI chat → Gemini API or Vertex AI.
pub struct AnthropicToGemini;

impl Direction for AnthropicToGemini {
    fn name(&self) -> &'static str {
        "anthropic_messages->gemini"
    }

    fn applies(&self, client: ApiSchema, op: Operation, backend: ApiSchema) -> bool {
        client == ApiSchema::Anthropic
            && op == Operation::Messages
            && matches!(backend, ApiSchema::Gemini | ApiSchema::Vertex)
    }

    fn request(&self, req: &ClientRequest<'_>, backend: &BackendSpec<'_>) -> Result<Upstream, Unsupported> {
        let (bytes, _) = req.json_body()?;
        let model = req.model().to_string();
        let via = anthropic_to_openai_chat(bytes, &model)?.to_string();
        let translated = openai_chat_to_gemini(via.as_bytes())?;
        let name = if model.is_empty() { "gemini" } else { &model };
        let stream = Chained(
            GeminiStreamToOpenAi::new(name, true),
            OpenAiStreamToAnthropic::default(),
        );
        Ok(Upstream::translated(
            gemini_path(backend, &model, req.stream()),
            json_body(&translated),
            (ApiSchema::Gemini, Operation::ChatCompletions),
            Some(Box::new(stream)),
            json_translator(
                move |v| openai_chat_to_anthropic_message(&gemini_to_openai(v, &model)),
                |b, status| openai_error_to_anthropic(gemini_error_to_openai(b).to_string().as_bytes(), status),
            ),
        ))
    }
}

/// Anthropic Messages → OpenAI chat → Bedrock Converse.
pub struct AnthropicToBedrock;

impl Direction for AnthropicToBedrock {
    fn name(&self) -> &'static str {
        "anthropic_messages->bedrock_converse"
    }

    fn applies(&self, client: ApiSchema, op: Operation, backend: ApiSchema) -> bool {
        (client, op, backend) == (ApiSchema::Anthropic, Operation::Messages, ApiSchema::Bedrock)
    }

    fn request(&self, req: &ClientRequest<'_>, _: &BackendSpec<'_>) -> Result<Upstream, Unsupported> {
        let (bytes, _) = req.json_body()?;
        let model = req.model().to_string();
        let via = anthropic_to_openai_chat(bytes, &model)?.to_string();
        let translated = openai_chat_to_bedrock(via.as_bytes(), &model)?;
        let name = if model.is_empty() { "bedrock" } else { &model };
        let stream = Chained(
            BedrockStreamToOpenAi::new(name, true),
            OpenAiStreamToAnthropic::default(),
        );
        Ok(Upstream::translated(
            converse_path(&model, req.stream()),
            json_body(&translated),
            (ApiSchema::Bedrock, Operation::ChatCompletions),
            Some(Box::new(stream)),
            json_translator(
                move |v| openai_chat_to_anthropic_message(&bedrock_to_openai(v, &model)),
                |b, status| {
                    openai_error_to_anthropic(bedrock_error_to_openai(b, status).to_string().as_bytes(), status)
                },
            ),
        ))
    }
}
