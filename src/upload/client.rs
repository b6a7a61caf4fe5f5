//! Call 1 for one row: the row's metadata as JSON to Voyc's API, with the bearer token, and
//! the conversation id and upload target back. The token goes only here, only to
//! `--base-url`. Call 1 is bounded as a whole by `--timeout`: its answer is small, and a server
//! trickling a byte a second must not hold a worker.

use std::time::Duration;

use bytes::Bytes;
use reqwest::Url;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};

use super::failure::{Call, Failure, api_failure, transport_failure};
use super::http::read_limited;
use super::response::{self, Call1Response};
use crate::human;
use crate::secret::{Credentials, Token, TokenCommand};

/// Voyc's API when `--base-url` is not given.
pub const DEFAULT_BASE_URL: &str = "https://api.app.voyc.ai";

/// The most of call 1's answer we read: it is a few hundred bytes of JSON.
const MAX_API_ANSWER: usize = 1 << 20;

/// What the client needs to know, already checked.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub base_url: Url,
    pub organisation: String,
    pub token: Token,
    /// Bounds the whole of call 1.
    pub timeout: Duration,
}

/// The client every worker shares.
#[derive(Clone, Debug)]
pub struct VoycClient {
    http: reqwest::Client,
    base_url: Url,
    endpoint: Url,
    credentials: std::sync::Arc<Credentials>,
    timeout: Duration,
}

/// `{base}/api/v2/workspace/{organisation}/conversation/upload_data/`.
pub fn call1_endpoint(base_url: &Url, organisation: &str) -> Url {
    let mut url = base_url.clone();
    let path = format!(
        "{}/api/v2/workspace/{organisation}/conversation/upload_data/",
        base_url.path().trim_end_matches('/')
    );
    url.set_path(&path);
    url
}

impl VoycClient {
    /// A client over an HTTP client already made by [`http_client`] with the same
    /// `timeout` and `ca_cert`.
    pub fn with_http(http: reqwest::Client, config: ClientConfig) -> VoycClient {
        VoycClient {
            endpoint: call1_endpoint(&config.base_url, &config.organisation),
            http,
            base_url: config.base_url,
            credentials: std::sync::Arc::new(Credentials::fixed(config.token)),
            timeout: config.timeout,
        }
    }

    /// With `--token-command`: the configured token is the one it printed at start, and once a
    /// call 1 refuses it (401, or 403 about credentials) the command is run once more for a
    /// fresh one (see [`Credentials::after_refusal`]).
    pub fn with_token_command(mut self, command: TokenCommand) -> VoycClient {
        let (_, token) = self.credentials.current();
        self.credentials = std::sync::Arc::new(Credentials::from_command(token, command));
        self
    }

    /// Where the token comes from, for messages: `VOYC_TOKEN or --token-file`, `--token-command`.
    pub fn token_source(&self) -> &'static str {
        self.credentials.source()
    }

    /// Where call 1 goes.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// Call 1: the row's JSON body; the conversation id and upload target back. A refused
    /// token is tried again once with a fresh one when there is one (`--token-command`): a
    /// refusal means call 1 was not processed, so sending it again is safe.
    pub async fn call1(&self, body: Bytes) -> Result<Call1Response, Failure> {
        let (generation, token) = self.credentials.current();
        let failure = match self.call1_with(&token, body.clone()).await {
            Err(failure) if failure.about_credentials => failure,
            answer => return answer,
        };
        match self.credentials.after_refusal(generation).await {
            Ok(None) => Err(failure),
            Ok(Some((_, fresh))) => self.call1_with(&fresh, body).await.map_err(|mut again| {
                if again.about_credentials {
                    again
                        .message
                        .push_str(" (also with a fresh token from --token-command)");
                }
                again
            }),
            Err(why) => Err(Failure {
                message: format!("{} (and no fresh token: {why})", failure.message),
                ..failure
            }),
        }
    }

    async fn call1_with(&self, token: &Token, body: Bytes) -> Result<Call1Response, Failure> {
        let request = self
            .http
            .post(self.endpoint.clone())
            .header(AUTHORIZATION, token.authorization())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(body);
        let exchange = async {
            let response = request
                .send()
                .await
                .map_err(|err| transport_failure(Call::Api, err))?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = read_limited(response, MAX_API_ANSWER)
                .await
                .map_err(|err| transport_failure(Call::Api, err))?;
            Ok::<_, Failure>((status, headers, body))
        };
        let (status, headers, body) = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(Failure::from_transport(
                    Call::Api,
                    true,
                    format!(
                        "no complete answer within {} (--timeout)",
                        human::duration(self.timeout)
                    ),
                ));
            }
        };
        if status.is_success() {
            if body.len() >= MAX_API_ANSWER {
                return Err(Failure {
                    status: Some(status.as_u16()),
                    ..Failure::permanent(
                        Call::Api,
                        format!("HTTP {}, but the answer is over 1 MiB", status.as_u16()),
                    )
                });
            }
            return response::parse(&body, &self.base_url).map_err(|shape| Failure {
                status: Some(status.as_u16()),
                conversation: response::conversation_id_in(&body),
                ..Failure::permanent(Call::Api, format!("HTTP {}, but {shape}", status.as_u16()))
            });
        }
        Err(api_failure(status, &headers, &body))
    }
}

#[cfg(test)]
mod tests {
    use super::super::http::http_client;
    use super::*;
    use crate::target::UploadTarget;
    use crate::upload::failure::Class;
    use voyc_testkit::scripted::{Reply, closed_port_url, serve};

    const TOKEN: &str = "test-token-123";

    fn client(base: &Url, timeout: Duration) -> VoycClient {
        VoycClient::with_http(
            http_client(timeout, None, true).unwrap(),
            ClientConfig {
                base_url: base.clone(),
                organisation: "118".into(),
                token: Token::parse(TOKEN).unwrap(),
                timeout,
            },
        )
    }

    fn post_answer(base: &Url) -> String {
        format!(
            r#"{{"conversation_id": "c-9", "upload": {{"url": "{base}s3/bucket", "fields": {{"key": "k/9", "policy": "cG9saWN5", "x-amz-signature": "sig"}}}}}}"#
        )
    }

    #[tokio::test]
    async fn call_1_posts_the_body_with_the_token_and_reads_the_target() {
        let server = serve(|head| {
            let base = format!("http://{}/", head.header("host").unwrap());
            Reply::json(201, &post_answer(&Url::parse(&base).unwrap()))
        })
        .await;
        let response = client(&server.url, Duration::from_secs(5))
            .call1(Bytes::from_static(br#"{"channel_id":"42"}"#))
            .await
            .unwrap();
        assert_eq!(response.conversation_id.0, "c-9");
        let UploadTarget::Post { url, fields } = &response.target else {
            panic!("expected a POST target");
        };
        assert_eq!(url.path(), "/s3/bucket");
        assert_eq!(fields[0], ("key".to_string(), "k/9".to_string()));

        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.head.method, "POST");
        assert_eq!(
            request.head.target,
            "/api/v2/workspace/118/conversation/upload_data/"
        );
        assert_eq!(
            request.head.header("authorization"),
            Some("Bearer test-token-123")
        );
        assert_eq!(
            request.head.header("content-type"),
            Some("application/json")
        );
        assert_eq!(request.body, br#"{"channel_id":"42"}"#);
    }

    /// A server that takes only `Bearer new`, and a client whose token (from the start) is
    /// another, with a `--token-command` that prints `fresh` and counts its runs in `runs`.
    #[cfg(unix)]
    async fn refusing_all_but_new(
        fresh: &str,
        runs: &std::path::Path,
    ) -> (voyc_testkit::scripted::Server, VoycClient) {
        let server = serve(|head| {
            let base = format!("http://{}/", head.header("host").unwrap());
            match head.header("authorization") {
                Some("Bearer new") => Reply::json(201, &post_answer(&Url::parse(&base).unwrap())),
                _ => Reply::json(401, r#"{"detail": "Invalid token."}"#),
            }
        })
        .await;
        let command = format!("echo run >> '{}'; echo {fresh}", runs.display());
        let client = client(&server.url, Duration::from_secs(5))
            .with_token_command(TokenCommand::new(&command).unwrap());
        (server, client)
    }

    #[cfg(unix)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_refused_token_is_fetched_again_once_for_every_call_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let (server, client) = refusing_all_but_new("new", &runs).await;
        assert_eq!(client.token_source(), "--token-command");
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { client.call1(Bytes::from_static(b"{}")).await })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap().conversation_id.0, "c-9");
        }
        let ran = std::fs::read_to_string(&runs).unwrap();
        assert_eq!(
            ran.lines().count(),
            1,
            "one fresh token for all eight calls"
        );
        // Later calls send the fresh token at once.
        let before = server.requests().len();
        client.call1(Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(server.requests().len(), before + 1);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_fresh_token_refused_too_is_a_refusal_that_says_so_and_no_third_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let (_server, client) = refusing_all_but_new("still-wrong", &runs).await;
        let failure = client.call1(Bytes::from_static(b"{}")).await.unwrap_err();
        assert!(failure.about_credentials);
        assert_eq!(failure.status, Some(401));
        assert_eq!(
            failure.message,
            "HTTP 401: Invalid token. (also with a fresh token from --token-command)"
        );
        // The fresh token is the one sent now; refused, it is refused for good.
        let failure = client.call1(Bytes::from_static(b"{}")).await.unwrap_err();
        assert_eq!(failure.message, "HTTP 401: Invalid token.");
        assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 1);
    }

    #[tokio::test]
    async fn a_drf_400_is_permanent_with_the_servers_message() {
        let server =
            serve(|_| Reply::json(400, r#"{"call_date": ["Date has wrong format."]}"#)).await;
        let failure = client(&server.url, Duration::from_secs(5))
            .call1(Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert_eq!(failure.class, Class::Permanent);
        assert_eq!(
            failure.describe(),
            "call 1: HTTP 400: call_date: Date has wrong format."
        );
        assert!(!failure.about_credentials);
    }

    #[tokio::test]
    async fn a_403_not_authenticated_is_a_credentials_problem() {
        let server = serve(|_| {
            Reply::json(
                403,
                r#"{"type":"client_error","errors":[{"code":"not_authenticated","detail":"Authentication credentials were not provided.","attr":null}]}"#,
            )
        })
        .await;
        let failure = client(&server.url, Duration::from_secs(5))
            .call1(Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert_eq!(failure.status, Some(403));
        assert!(failure.about_credentials);
        assert_eq!(
            failure.message,
            "HTTP 403: Authentication credentials were not provided."
        );
    }

    #[tokio::test]
    async fn a_429_is_transient_and_carries_retry_after() {
        let server = serve(|_| {
            Reply::json(429, r#"{"detail": "Slow down."}"#).with_header("Retry-After", "3")
        })
        .await;
        let failure = client(&server.url, Duration::from_secs(5))
            .call1(Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert!(failure.is_transient());
        assert!(!failure.ambiguous);
        assert_eq!(failure.retry_after, Some(Duration::from_secs(3)));
        assert_eq!(failure.message, "HTTP 429: Slow down.");
    }

    #[tokio::test]
    async fn a_502_html_page_is_transient_ambiguous_and_rendered_by_its_title() {
        let server = serve(|_| Reply::Respond {
            status: 502,
            headers: vec![("Content-Type".into(), "text/html".into())],
            body: b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
                .to_vec(),
        })
        .await;
        let failure = client(&server.url, Duration::from_secs(5))
            .call1(Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert!(failure.is_transient() && failure.ambiguous);
        assert_eq!(failure.message, "HTTP 502: 502 Bad Gateway");
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed_and_names_where_it_pointed() {
        let server = serve(|head| {
            if head.target.starts_with("/elsewhere") {
                Reply::json(201, r#"{"id": 1, "upload_url": "http://127.0.0.1/x"}"#)
            } else {
                let host = head.header("host").unwrap().to_string();
                Reply::json(301, "")
                    .with_header("Location", &format!("http://{host}/elsewhere/?sig=SECRET"))
            }
        })
        .await;
        let failure = client(&server.url, Duration::from_secs(5))
            .call1(Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert_eq!(failure.class, Class::Permanent);
        assert!(
            failure
                .message
                .starts_with("HTTP 301: redirected to http://127.0.0.1:")
                && failure
                    .message
                    .contains("/elsewhere/, which is not followed"),
            "{}",
            failure.message
        );
        assert!(!failure.message.contains("SECRET"));
        assert_eq!(
            server.requests().len(),
            1,
            "the redirect must not be followed"
        );
    }

    #[tokio::test]
    async fn a_server_trickling_its_answer_cannot_hold_call_1_past_the_timeout() {
        let server = serve(|_| Reply::Trickle {
            body: br#"{"id": 1, "upload_url": "http://127.0.0.1/x"}"#.to_vec(),
            every: Duration::from_millis(100),
        })
        .await;
        let failure = client(&server.url, Duration::from_millis(500))
            .call1(Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert!(failure.is_transient() && failure.ambiguous, "{failure:?}");
        assert_eq!(
            failure.message,
            "no complete answer within 500ms (--timeout)"
        );
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out_as_ambiguous() {
        let server = serve(|_| Reply::Silent).await;
        let failure = client(&server.url, Duration::from_millis(300))
            .call1(Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert!(failure.is_transient() && failure.ambiguous);
    }

    #[tokio::test]
    async fn a_reset_after_sending_call_1_is_transient_and_ambiguous() {
        let server = serve(|_| Reply::Reset).await;
        let failure = client(&server.url, Duration::from_secs(5))
            .call1(Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert!(failure.is_transient() && failure.ambiguous, "{failure:?}");
        assert!(
            failure.message.starts_with("connection failed: "),
            "{}",
            failure.message
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_transient_but_not_ambiguous() {
        let url = closed_port_url().await;
        let failure = client(&url, Duration::from_secs(5))
            .call1(Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert!(failure.is_transient() && !failure.ambiguous, "{failure:?}");
        assert!(
            failure.message.starts_with("cannot connect to 127.0.0.1:"),
            "{}",
            failure.message
        );
    }

    #[tokio::test]
    async fn an_unknown_answer_shape_fails_permanently_naming_the_keys() {
        let server =
            serve(|_| Reply::json(201, r#"{"conversation_id": "c", "s3": "SECRET"}"#)).await;
        let failure = client(&server.url, Duration::from_secs(5))
            .call1(Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert_eq!(failure.class, Class::Permanent);
        assert_eq!(failure.status, Some(201));
        assert_eq!(
            failure.message,
            "HTTP 201, but the answer holds no upload target (looked for url with fields, upload_url, presigned_url, url); keys: conversation_id, s3"
        );
    }

    #[test]
    fn the_call_1_endpoint_keeps_a_base_path() {
        let url = call1_endpoint(&Url::parse("https://x.test/prefix/").unwrap(), "118");
        assert_eq!(
            url.as_str(),
            "https://x.test/prefix/api/v2/workspace/118/conversation/upload_data/"
        );
        let url = call1_endpoint(&Url::parse("https://x.test").unwrap(), "7");
        assert_eq!(
            url.as_str(),
            "https://x.test/api/v2/workspace/7/conversation/upload_data/"
        );
    }
}
