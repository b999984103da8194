//! The walls of the trust boundary, each against the real server over gRPC: authentication,
//! ownership, request fingerprints, mutual TLS and requests that cannot be decoded.
//! Certificates are generated at run time; nothing secret is committed.

#![allow(clippy::unwrap_used, reason = "test code: a failed step should fail the test loudly")]

use std::sync::Arc;

use orchestrator_api_grpc::pb;
use orchestrator_api_grpc::pb::orchestrator_service_client::OrchestratorServiceClient;
use orchestrator_server::{AuthMode, Config};
use orchestrator_test_support::pki::Pki;
use orchestrator_tests::{ScriptedBackend, TestApp, spawn_app_with};
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789ab";
const OPS: &str = "ops-token-0123456789abc";

type Client = OrchestratorServiceClient<InterceptedService<Channel, Bearer>>;

/// Sends `authorization: Bearer <token>` on every call (no header when `None`).
#[derive(Clone)]
struct Bearer(Option<String>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

async fn client(app: &TestApp, token: Option<&str>) -> Client {
    OrchestratorServiceClient::with_interceptor(app.channel().await, Bearer(token.map(str::to_owned)))
}

/// A server that accepts the three tokens above (ops is an admin).
async fn spawn_with_tokens() -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("alice {ALICE}\nbob {BOB}\nops {OPS} admin\n")).unwrap();
    let app = spawn_app_with(
        move |c| Config { auth_tokens_file: Some(tokens), ..c },
        Some(Arc::new(ScriptedBackend::new())),
    )
    .await;
    (app, dir)
}

fn request(task_id: &str, description: &str) -> pb::DeliberateRequest {
    pb::DeliberateRequest {
        task_id: task_id.into(),
        task_description: description.into(),
        role: "DEV".into(),
        num_agents: Some(2),
        rounds: Some(1),
        ..Default::default()
    }
}

#[tokio::test]
async fn without_a_valid_token_nothing_but_health_and_reflection_answers() {
    let (app, _dir) = spawn_with_tokens().await;
    for token in [None, Some("wrong-token-0123456789"), Some("")] {
        let mut anonymous = client(&app, token).await;
        let err = anonymous.get_status(pb::GetStatusRequest { include_stats: false }).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{token:?}: {err:?}");
        let err = anonymous.submit_deliberation(request("x", "Write a parser")).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
        assert!(!err.message().contains("alice") && !err.message().contains(ALICE), "{err:?}");
    }
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel().await);
    let serving =
        health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
    assert_eq!(
        serving.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(app.channel().await);
    let list = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut answers =
        reflection.server_reflection_info(futures::stream::iter([list])).await.unwrap().into_inner();
    assert!(answers.message().await.unwrap().is_some(), "reflection stays open");
    let mut alice = client(&app, Some(ALICE)).await;
    alice.get_status(pb::GetStatusRequest { include_stats: false }).await.unwrap();
}

#[tokio::test]
async fn status_counters_are_a_principals_own_unless_admin() {
    let (app, _dir) = spawn_with_tokens().await;
    let mut alice = client(&app, Some(ALICE)).await;
    alice.deliberate(request("alice-counted", "Write a CSV parser")).await.unwrap();
    let total = |client: &mut Client| {
        let mut client = client.clone();
        async move {
            let status = client.get_status(pb::GetStatusRequest { include_stats: true }).await.unwrap();
            status.into_inner().stats.unwrap().total_deliberations
        }
    };
    assert_eq!(total(&mut alice).await, 1);
    assert_eq!(total(&mut client(&app, Some(BOB)).await).await, 0, "bob sees none of alice's work");
    assert_eq!(total(&mut client(&app, Some(OPS)).await).await, 1, "an admin sees everyone's");
}

#[tokio::test]
async fn a_principal_sees_and_touches_only_its_own_work_unless_admin() {
    let (app, _dir) = spawn_with_tokens().await;
    let mut alice = client(&app, Some(ALICE)).await;
    let mut bob = client(&app, Some(BOB)).await;
    let mut ops = client(&app, Some(OPS)).await;
    alice.deliberate(request("alice-1", "Write a CSV parser")).await.unwrap();
    bob.deliberate(request("bob-1", "Write a JSON parser")).await.unwrap();

    let get = |task_id: &str| pb::GetDeliberationResultRequest { task_id: task_id.into() };
    let theirs = bob.get_deliberation_result(get("alice-1")).await.unwrap_err();
    let unknown = bob.get_deliberation_result(get("nobody-1")).await.unwrap_err();
    assert_eq!((theirs.code(), unknown.code()), (Code::NotFound, Code::NotFound));
    assert_eq!(
        theirs.message().replace("alice-1", "?"),
        unknown.message().replace("nobody-1", "?"),
        "another principal's id reads exactly like an unknown one"
    );
    let listed = |page: pb::ListDeliberationsResponse| {
        let mut ids: Vec<String> = page.deliberations.into_iter().map(|d| d.task_id).collect();
        ids.sort();
        ids
    };
    let all = pb::ListDeliberationsRequest { page_size: 50, ..Default::default() };
    assert_eq!(listed(bob.list_deliberations(all.clone()).await.unwrap().into_inner()), ["bob-1"]);
    assert_eq!(listed(alice.list_deliberations(all.clone()).await.unwrap().into_inner()), ["alice-1"]);
    assert_eq!(listed(ops.list_deliberations(all).await.unwrap().into_inner()), ["alice-1", "bob-1"]);

    let err = bob
        .cancel_deliberation(pb::CancelDeliberationRequest { task_id: "alice-1".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // Reusing alice's id, even with her exact request, never returns her result.
    let err = bob.deliberate(request("alice-1", "Write a CSV parser")).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(err.message(), "task_id \"alice-1\" is already in use; choose another");
    // The stream is refused before its first update (a Trailers-Only answer); a refusal inside
    // the stream would be as good, as long as nothing of alice's comes first.
    let refused = match bob.stream_deliberation(request("alice-1", "Write a CSV parser")).await {
        Err(status) => Some(status),
        Ok(response) => {
            let mut stream = response.into_inner();
            let mut refused = None;
            while let Some(item) = stream.message().await.transpose() {
                match item {
                    Ok(update) => {
                        assert!(update.partial_result.is_none(), "no result of alice's reaches bob")
                    }
                    Err(status) => refused = Some(status),
                }
            }
            refused
        }
    };
    assert_eq!(refused.map(|s| s.code()), Some(Code::AlreadyExists));

    let record = ops.get_deliberation_result(get("alice-1")).await.unwrap().into_inner();
    assert_eq!(record.status, pb::DeliberationStatus::Completed as i32, "an admin reads everyone's work");
}

#[tokio::test]
async fn a_reused_task_id_with_another_request_is_a_conflict_not_the_stored_result() {
    let (app, _dir) = spawn_with_tokens().await;
    let mut alice = client(&app, Some(ALICE)).await;
    let first = alice.deliberate(request("same-id", "Write a CSV parser")).await.unwrap().into_inner();
    let retry = alice.deliberate(request("same-id", "Write a CSV parser")).await.unwrap().into_inner();
    assert_eq!(first.winner_id, retry.winner_id, "the same request is answered from storage");
    for changed in [
        request("same-id", "Write a YAML parser"),
        pb::DeliberateRequest { num_agents: Some(3), ..request("same-id", "Write a CSV parser") },
        pb::DeliberateRequest { rounds: Some(0), ..request("same-id", "Write a CSV parser") },
        pb::DeliberateRequest { role: "QA".into(), ..request("same-id", "Write a CSV parser") },
    ] {
        let err = alice.deliberate(changed.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{changed:?}");
        assert!(
            err.message().starts_with("task_id \"same-id\" was already used for a different request"),
            "{err:?}"
        );
        let err = alice.submit_deliberation(changed).await.unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists);
    }
}

/// Raw bytes on the wire, for requests no generated client would send.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

async fn raw_deliberate(app: &TestApp, body: Vec<u8>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(app.channel().await);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/orchestrator.v1.OrchestratorService/Deliberate");
    grpc.unary(tonic::Request::new(body), path, RawCodec).await.unwrap_err()
}

#[tokio::test]
async fn undecodable_requests_are_invalid_arguments_and_oversize_ones_resource_exhausted() {
    let app = spawn_app_with(|c| c, Some(Arc::new(ScriptedBackend::new()))).await;
    // Field 1 (task_description, a string) holding bytes that are not UTF-8.
    let status = raw_deliberate(&app, vec![0x0a, 0x02, 0xff, 0xfe]).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("malformed request"), "{status:?}");
    // A length prefix running past the end of the message.
    let status = raw_deliberate(&app, vec![0x0a, 0x7f, b'x']).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let mut huge = vec![0x0a];
    let len: u32 = 2 * 1024 * 1024;
    let mut n = len;
    while n >= 0x80 {
        huge.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    huge.push(n as u8);
    huge.extend(std::iter::repeat_n(b'x', len as usize));
    let status = raw_deliberate(&app, huge).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(status.message(), "request too large: the limit is 1048576 bytes");
}

#[tokio::test]
async fn unknown_roles_are_not_echoed_in_full() {
    let app = spawn_app_with(|c| c, Some(Arc::new(ScriptedBackend::new()))).await;
    let mut client = app.client.clone();
    let role = "X".repeat(10_000);
    let err = client
        .deliberate(pb::DeliberateRequest { role: role.clone(), ..request("", "x") })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("role: unknown role"), "{}", err.message());
    assert!(err.message().len() < 300, "the excerpt is capped: {} bytes", err.message().len());
}

async fn tls_channel(app: &TestApp, ca: &str, identity: Option<(String, String)>) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Channel::from_shared(format!("https://localhost:{}", app.addr.port()))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(channel)
}

#[tokio::test]
async fn mutual_tls_admits_only_certificates_of_the_client_ca_and_names_the_principal() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server_pki = Pki::new("server-ca");
    let client_pki = Pki::new("client-ca");
    let stranger_pki = Pki::new("stranger-ca");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = server_pki.leaf("localhost");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let (cert, key, client_ca) =
        (write("cert.pem", &cert), write("key.pem", &key), write("ca.pem", &client_pki.ca_pem));
    let app = spawn_app_with(
        move |c| Config {
            auth: Some(AuthMode::Mtls),
            auth_admins: vec!["ops".into()],
            tls_cert: Some(cert),
            tls_key: Some(key),
            tls_client_ca: Some(client_ca),
            ..c
        },
        Some(Arc::new(ScriptedBackend::new())),
    )
    .await;

    let alice = tls_channel(&app, &server_pki.ca_pem, Some(client_pki.leaf("alice"))).await.unwrap();
    let mut alice = OrchestratorServiceClient::new(alice);
    alice.deliberate(request("tls-1", "Write a CSV parser")).await.unwrap();
    let bob = tls_channel(&app, &server_pki.ca_pem, Some(client_pki.leaf("bob"))).await.unwrap();
    let err = OrchestratorServiceClient::new(bob)
        .get_deliberation_result(pb::GetDeliberationResultRequest { task_id: "tls-1".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "the certificate's name is the principal");
    // The name of the unauthenticated caller is reserved: a certificate that claims it is refused.
    for claimed in ["anonymous", "ANONYMOUS"] {
        let impostor = tls_channel(&app, &server_pki.ca_pem, Some(client_pki.leaf(claimed))).await.unwrap();
        let err = OrchestratorServiceClient::new(impostor)
            .list_deliberations(pb::ListDeliberationsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{claimed}: {err:?}");
        assert!(err.message().contains("reserved"), "{}", err.message());
    }

    // A certificate of another CA, or none at all, does not get through the handshake.
    for identity in [Some(stranger_pki.leaf("alice")), None] {
        let refused = match tls_channel(&app, &server_pki.ca_pem, identity).await {
            Err(_) => true,
            Ok(channel) => OrchestratorServiceClient::new(channel)
                .get_status(pb::GetStatusRequest { include_stats: false })
                .await
                .is_err(),
        };
        assert!(refused, "a client without a certificate of the client CA is refused");
    }
    // Plaintext against the TLS port fails instead of downgrading.
    let plain =
        Channel::from_shared(format!("http://127.0.0.1:{}", app.addr.port())).unwrap().connect().await;
    if let Ok(channel) = plain {
        let err = OrchestratorServiceClient::new(channel)
            .get_status(pb::GetStatusRequest { include_stats: false })
            .await
            .unwrap_err();
        assert_ne!(err.code(), Code::Ok);
    }
}

/// A model server that refuses every credential: a configuration fault of the profile, which
/// clients must see as FAILED_PRECONDITION naming the profile (not UNAVAILABLE, which invites
/// retries), with neither the key nor the backend's body or URL in the message.
#[tokio::test]
async fn a_backend_refusing_the_credentials_is_a_failed_precondition_naming_the_profile() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const KEY: &str = "sk-live-0123456789abcdefghij";
    let model = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(401).set_body_string(format!("invalid api key {KEY}")))
        .mount(&model)
        .await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut profile = orchestrator_infra_llm::LlmProfile::new(format!("{}/v1", model.uri()), "m");
    profile.api_key = Some(KEY.to_owned().into());
    let config = Config {
        profiles: std::collections::BTreeMap::from([("gpu".to_owned(), profile)]),
        ..orchestrator_tests::test_config(&data_dir)
    };
    let app = orchestrator_server::Application::build(config).await.unwrap();
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let mut client = OrchestratorServiceClient::connect(format!("http://{addr}")).await.unwrap();

    let status = client
        .deliberate(pb::DeliberateRequest {
            agent_profiles: vec!["gpu".into()],
            ..request("refused-key", "Write a Python add(a, b)")
        })
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("profile(s) \"gpu\""), "{}", status.message());
    for secret in [KEY, model.uri().as_str(), "invalid api key"] {
        assert!(!status.message().contains(secret), "leaked {secret}: {}", status.message());
    }
    let _ = stop.send(());
    served.await.unwrap().unwrap();
}
