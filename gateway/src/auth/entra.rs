//! OAuth 2.0 client-credentials grants (RFC 6749 §4.4): an application's client id and secret
//! become access tokens at a token endpoint, cached like every OAuth token.
//!
//! - `azureEntra`: an Azure Entra ID application (`{"tenantId", "clientId", "clientSecret"}`,
//!   optionally `"authorityHost"`, default `https://login.microsoftonline.com`), tokens for
//!   `https://cognitiveservices.azure.com/.default` (Azure OpenAI);
//! - `oauthClientCredentials`: any authorization server (`{"tokenUrl", "clientId",
//!   "clientSecret"}`, optionally `"scope"` and `"audience"`), e.g. for a remote MCP server.

/// The scope Azure OpenAI accepts.
pub const SCOPE: &str = "https://cognitiveservices.azure.com/.default";

pub struct ClientCredentials {
    pub client_id: String,
    client_secret: String,
    pub token_uri: String,
    scope: Option<String>,
    audience: Option<String>,
    pub cache: super::oauth::TokenCache,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientCredentials({}, <redacted>)", self.client_id)
    }
}

fn fields(json: &str) -> Option<impl Fn(&str) -> Option<String>> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    Some(move |k: &str| v[k].as_str().filter(|s| !s.is_empty()).map(str::to_string))
}

impl ClientCredentials {
    /// An Azure Entra application.
    pub fn entra(json: &str) -> Option<ClientCredentials> {
        let field = fields(json)?;
        let authority = field("authorityHost").unwrap_or_else(|| "https://login.microsoftonline.com".into());
        Some(ClientCredentials {
            token_uri: format!(
                "{}/{}/oauth2/v2.0/token",
                authority.trim_end_matches('/'),
                field("tenantId")?
            ),
            client_id: field("clientId")?,
            client_secret: field("clientSecret")?,
            scope: Some(SCOPE.into()),
            audience: None,
            cache: Default::default(),
        })
    }

    /// Any authorization server's client credentials (`tokenUrl`: `http://` or `https://`).
    pub fn generic(json: &str) -> Option<ClientCredentials> {
        let field = fields(json)?;
        let token_uri = field("tokenUrl").filter(|u| u.starts_with("https://") || u.starts_with("http://"))?;
        Some(ClientCredentials {
            token_uri,
            client_id: field("clientId")?,
            client_secret: field("clientSecret")?,
            scope: field("scope"),
            audience: field("audience"),
            cache: Default::default(),
        })
    }

    pub fn token_request(&self) -> String {
        use super::oauth::form_encode as enc;
        let mut body = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            enc(&self.client_id),
            enc(&self.client_secret)
        );
        for (k, v) in [("scope", &self.scope), ("audience", &self.audience)] {
            if let Some(v) = v {
                body.push_str(&format!("&{k}={}", enc(v)));
            }
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_is_read_and_asks_for_the_cognitive_services_scope() {
        let app = ClientCredentials::entra(
            r#"{"tenantId":"t-1","clientId":"c-1","clientSecret":"s+cr/t","authorityHost":"https://127.0.0.1:9/"}"#,
        )
        .unwrap();
        assert_eq!(app.token_uri, "https://127.0.0.1:9/t-1/oauth2/v2.0/token");
        assert_eq!(
            app.token_request(),
            "grant_type=client_credentials&client_id=c-1&client_secret=s%2Bcr%2Ft&scope=https%3A%2F%2Fcognitiveservices.azure.com%2F.default"
        );
        assert!(!format!("{app:?}").contains("s+cr"));
        assert!(ClientCredentials::entra(r#"{"tenantId":"t"}"#).is_none());
        let default = ClientCredentials::entra(r#"{"tenantId":"t","clientId":"c","clientSecret":"s"}"#).unwrap();
        assert_eq!(
            default.token_uri,
            "https://login.microsoftonline.com/t/oauth2/v2.0/token"
        );
    }

    #[test]
    fn any_authorization_server_takes_its_scope_and_audience() {
        let app = ClientCredentials::generic(
            r#"{"tokenUrl":"http://127.0.0.1:9/token","clientId":"agent","clientSecret":"s3","scope":"tools:call","audience":"mcp"}"#,
        )
        .unwrap();
        assert_eq!(
            app.token_request(),
            "grant_type=client_credentials&client_id=agent&client_secret=s3&scope=tools%3Acall&audience=mcp"
        );
        let bare =
            ClientCredentials::generic(r#"{"tokenUrl":"https://a/t","clientId":"c","clientSecret":"s"}"#).unwrap();
        assert_eq!(
            bare.token_request(),
            "grant_type=client_credentials&client_id=c&client_secret=s"
        );
        assert!(ClientCredentials::generic(r#"{"tokenUrl":"ftp://a","clientId":"c","clientSecret":"s"}"#).is_none());
        assert!(ClientCredentials::generic(r#"{"clientId":"c","clientSecret":"s"}"#).is_none());
    }
}
