//! [`Api`]: actions (`POST {base}/v1/actions/<name>`) and plain requests
//! on kept-alive connections; [`request`], one request on a connection of
//! its own.

use crate::config::{action_url, base_url, endpoint, http_client, ClientConfig, MAX_IDLE};
use crate::error::{ActionError, ConfigError, Refusal};
use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;
use url::Url;

/// A client of the operator API with one token. Clones (and
/// [`with_token`](Api::with_token)) share one connection pool, so one
/// `Api` used for thousands of calls reuses its connections (HTTP
/// keep-alive); the pool is all the state it holds. Its `Debug` leaves
/// the token out.
#[derive(Clone)]
pub struct Api {
    /// The URL as given (for messages).
    url: String,
    /// The normalised base (path ending in `/`).
    base: Url,
    token: String,
    timeout: Option<Duration>,
    http: reqwest::Client,
}

/// An answer to a plain [`request`]: status code and JSON body (`Null` when
/// the body is empty).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Parsed body.
    pub body: Value,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("base", &self.base.as_str())
            .field("token", &"<hidden>")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Api {
    /// A client for `url` (`http://host:port`, `https://host/prefix/` or a
    /// bare `host:port`) with `token`, the system's CA roots and no time
    /// limit. Fails on a URL it cannot use.
    pub fn new(url: &str, token: &str) -> Result<Self, ConfigError> {
        Self::from_config(&ClientConfig::new(url, token))
    }

    /// A client as `config` says.
    pub fn from_config(config: &ClientConfig) -> Result<Self, ConfigError> {
        Self::build(config, MAX_IDLE)
    }

    fn build(config: &ClientConfig, max_idle: usize) -> Result<Self, ConfigError> {
        let base = base_url(&config.url)?;
        let http = http_client(&base, config, max_idle)?;
        Ok(Self {
            url: config.url.trim().to_string(),
            base,
            token: config.token.clone(),
            timeout: config.timeout,
            http,
        })
    }

    /// The API address as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The normalised base URL every path is resolved under.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The bearer token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The limit on one call, if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The same API with another token (sharing the connection pool).
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: token.to_string(),
            ..self.clone()
        }
    }

    /// Runs action `name` with `args` (a JSON object); answers its `data`
    /// (`Null` when the answer has none), or the [`ActionError`].
    pub async fn call_raw(&self, name: &str, args: &Value) -> Result<Value, ActionError> {
        let body = serde_json::to_vec(args).map_err(|source| ActionError::Arguments {
            action: name.to_string(),
            source,
        })?;
        self.call_bytes(name, &body).await
    }

    /// The same as [`call_raw`](Api::call_raw) (the hand-written client's
    /// name for it).
    pub async fn call(&self, name: &str, args: &Value) -> Result<Value, ActionError> {
        self.call_raw(name, args).await
    }

    /// Runs action `name` with a body sent as it is (the server judges it:
    /// `powernode call` passes what the operator typed).
    pub async fn call_bytes(&self, name: &str, body: &[u8]) -> Result<Value, ActionError> {
        let url = action_url(&self.base, name)?;
        let (status, raw) = self
            .exchange(
                reqwest::Method::POST,
                url,
                Some(&self.token),
                Bytes::copy_from_slice(body),
            )
            .await?;
        if !(200..300).contains(&status) {
            return Err(Refusal::from_answer(status, &raw).into());
        }
        let mut answer = self.json(status, &raw)?;
        Ok(answer
            .get_mut("data")
            .map(Value::take)
            .unwrap_or(Value::Null))
    }

    /// Runs action `name` like [`call_raw`](Api::call_raw), with extra
    /// request headers (the MCP server tags its calls for the audit).
    pub async fn call_with_headers(
        &self,
        name: &str,
        args: &Value,
        headers: &[(&str, String)],
    ) -> Result<Value, ActionError> {
        let body = serde_json::to_vec(args).map_err(|source| ActionError::Arguments {
            action: name.to_string(),
            source,
        })?;
        let mut req = self
            .http
            .post(action_url(&self.base, name)?)
            .header(CONTENT_TYPE, "application/json")
            .bearer_auth(&self.token)
            .body(body);
        for (header, value) in headers {
            req = req.header(*header, value.as_str());
        }
        if let Some(t) = self.timeout {
            req = req.timeout(t);
        }
        let answer = req.send().await.map_err(|e| self.http_error(e))?;
        let status = answer.status().as_u16();
        let raw = answer.bytes().await.map_err(|e| self.http_error(e))?;
        if !(200..300).contains(&status) {
            return Err(Refusal::from_answer(status, &raw).into());
        }
        let mut answer = self.json(status, &raw)?;
        Ok(answer
            .get_mut("data")
            .map(Value::take)
            .unwrap_or(Value::Null))
    }

    /// Runs action `name` with typed arguments and decodes its `data` as
    /// `R`; a `data` of another shape is [`ActionError::Malformed`], naming
    /// where it differs.
    pub async fn call_json<A, R>(&self, name: &str, args: &A) -> Result<R, ActionError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let body = serde_json::to_vec(args).map_err(|source| ActionError::Arguments {
            action: name.to_string(),
            source,
        })?;
        let data = self.call_bytes(name, &body).await?;
        serde_path_to_error::deserialize(data).map_err(|e| ActionError::Malformed {
            url: self.url.clone(),
            status: 200,
            reason: format!("the data of {name} at {}: {}", e.path(), e.inner()),
        })
    }

    /// Runs the action `A` of the typed action table
    /// ([`powernode_actions`]) with its typed arguments and answers its typed
    /// answer: `api.act::<ListClusters>(&ListClustersArgs::default())`.
    pub async fn act<A: powernode_actions::Action>(
        &self,
        args: &A::Args,
    ) -> Result<A::Answer, ActionError> {
        self.call_json(A::NAME, args).await
    }

    /// `method path` (an API path, resolved under the base) with this
    /// client's token and `body` (sent as `application/json`); the answer
    /// whatever its status.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<Answer, ActionError> {
        self.request_with(method, path, Some(self.token.as_str()), body)
            .await
    }

    async fn request_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> Result<Answer, ActionError> {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| ConfigError::Method(method.to_string()))?;
        let url = endpoint(&self.base, path)?;
        let (status, raw) = self
            .exchange(method, url, token, Bytes::copy_from_slice(body))
            .await?;
        Ok(Answer {
            status,
            body: self.json(status, &raw)?,
        })
    }

    /// One exchange: the status and the whole body, within the time limit.
    async fn exchange(
        &self,
        method: reqwest::Method,
        url: Url,
        token: Option<&str>,
        body: Bytes,
    ) -> Result<(u16, Bytes), ActionError> {
        let mut req = self
            .http
            .request(method, url)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(t) = self.timeout {
            req = req.timeout(t);
        }
        let answer = req.send().await.map_err(|e| self.http_error(e))?;
        let status = answer.status().as_u16();
        let raw = answer.bytes().await.map_err(|e| self.http_error(e))?;
        Ok((status, raw))
    }

    /// `raw` as JSON (`Null` when empty).
    fn json(&self, status: u16, raw: &[u8]) -> Result<Value, ActionError> {
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(raw).map_err(|_| ActionError::Malformed {
            url: self.url.clone(),
            status,
            reason: crate::error::not_json(status, raw),
        })
    }

    /// An error of the HTTP stack as an [`ActionError`].
    pub(crate) fn http_error(&self, e: reqwest::Error) -> ActionError {
        ActionError::from_http(&self.url, e, self.timeout)
    }

    /// A request builder for `path` with the token (streams use it).
    pub(crate) fn get(&self, path: &str) -> Result<reqwest::RequestBuilder, ActionError> {
        let url = endpoint(&self.base, path)?;
        Ok(self.http.get(url).bearer_auth(&self.token))
    }
}

/// Sends one request to `url` (`http://host:port`, `https://…` or a bare
/// `host:port`) on a connection of its own, with `token` when given; the
/// answer whatever its status.
pub async fn request(
    url: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> Result<Answer, ActionError> {
    let api = Api::build(&ClientConfig::new(url, ""), 0)?;
    api.request_with(method, path, token, body).await
}
