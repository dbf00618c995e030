//! Azure Entra ID (client-credentials grant) for Azure OpenAI: the application's
//! `{"tenantId", "clientId", "clientSecret"}` (and optionally `"authorityHost"`, default
//! `https://login.microsoftonline.com`) become access tokens for
//! `https://cognitiveservices.azure.com/.default`, cached like every OAuth token.

/// The scope Azure OpenAI accepts.
pub const SCOPE: &str = "https://cognitiveservices.azure.com/.default";

pub struct EntraApp {
    pub client_id: String,
    client_secret: String,
    pub token_uri: String,
    pub cache: super::oauth::TokenCache,
}

impl std::fmt::Debug for EntraApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EntraApp({}, <redacted>)", self.client_id)
    }
}

impl EntraApp {
    pub fn parse(json: &str) -> Option<EntraApp> {
        let v: serde_json::Value = serde_json::from_str(json).ok()?;
        let field = |k: &str| v[k].as_str().filter(|s| !s.is_empty()).map(str::to_string);
        let authority = field("authorityHost").unwrap_or_else(|| "https://login.microsoftonline.com".into());
        Some(EntraApp {
            token_uri: format!(
                "{}/{}/oauth2/v2.0/token",
                authority.trim_end_matches('/'),
                field("tenantId")?
            ),
            client_id: field("clientId")?,
            client_secret: field("clientSecret")?,
            cache: Default::default(),
        })
    }

    pub fn token_request(&self) -> String {
        use super::oauth::form_encode as enc;
        format!(
            "grant_type=client_credentials&client_id={}&client_secret={}&scope={}",
            enc(&self.client_id),
            enc(&self.client_secret),
            enc(SCOPE)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_is_read_and_asks_for_the_cognitive_services_scope() {
        let app = EntraApp::parse(
            r#"{"tenantId":"t-1","clientId":"c-1","clientSecret":"s+cr/t","authorityHost":"https://127.0.0.1:9/"}"#,
        )
        .unwrap();
        assert_eq!(app.token_uri, "https://127.0.0.1:9/t-1/oauth2/v2.0/token");
        assert_eq!(
            app.token_request(),
            "grant_type=client_credentials&client_id=c-1&client_secret=s%2Bcr%2Ft&scope=https%3A%2F%2Fcognitiveservices.azure.com%2F.default"
        );
        assert!(!format!("{app:?}").contains("s+cr"));
        assert!(EntraApp::parse(r#"{"tenantId":"t"}"#).is_none());
        let default = EntraApp::parse(r#"{"tenantId":"t","clientId":"c","clientSecret":"s"}"#).unwrap();
        assert_eq!(
            default.token_uri,
            "https://login.microsoftonline.com/t/oauth2/v2.0/token"
        );
    }
}
