//! t40: bad input is refused with the right gRPC code and a helpful message, and changes nothing:
//! unknown plan, invalid settings, unknown instance or app, destroy with the wrong confirmation,
//! and wrong or missing admin token.

use anyhow::{Result, ensure};
use kvs_proto::pb;
use kvs_testbed::Cluster;
use kvs_testbed::cluster::AVAILABLE_TIMEOUT;
use kvs_testbed::testing::expect_status;
use tonic::Code;

const UNKNOWN_INSTANCE: &str = "redis-nothing-0001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_bad_input_is_refused_and_changes_nothing() -> Result<()> {
    kvs_testbed::init_test_tracing();
    let mut cluster = Cluster::start_default(1).await?;
    let create = |plan: &str| pb::CreateInstanceRequest {
        plan: plan.into(),
        app: "t40-app".into(),
        ..Default::default()
    };

    let (name, before) = {
        tracing::info!("--- one valid instance, then record ListInstances");
        let name = cluster.create_instance("mini", "t40-app").await?;
        cluster.wait_available(&name, AVAILABLE_TIMEOUT).await?;
        (name, cluster.list_instances("").await?)
    };
    let mut admin = cluster.admin()?;

    {
        tracing::info!(
            "--- create: unknown plan, invalid policy, timeout, keyspace flags, app name"
        );
        let reply = admin.create_instance(create("premium-99")).await;
        expect_status(
            "unknown plan",
            reply,
            &[Code::InvalidArgument],
            &["premium-99", "mini", "premium-0"],
        )?;
        let reply = admin
            .create_instance(pb::CreateInstanceRequest {
                maxmemory_policy: "lru".into(),
                ..create("mini")
            })
            .await;
        expect_status(
            "invalid policy",
            reply,
            &[Code::InvalidArgument],
            &["lru", "noeviction"],
        )?;
        let too_long = kvs_proto::settings::TIMEOUT_MAX_SECONDS + 1;
        let reply = admin
            .create_instance(pb::CreateInstanceRequest {
                timeout_seconds: Some(too_long),
                ..create("mini")
            })
            .await;
        expect_status(
            "invalid timeout",
            reply,
            &[Code::InvalidArgument],
            &["timeout"],
        )?;
        let reply = admin
            .create_instance(pb::CreateInstanceRequest {
                notify_keyspace_events: "Q".into(),
                ..create("mini")
            })
            .await;
        expect_status(
            "invalid keyspace flags",
            reply,
            &[Code::InvalidArgument],
            &["Q"],
        )?;
        let reply = admin
            .create_instance(pb::CreateInstanceRequest {
                app: "Not An App!".into(),
                ..create("mini")
            })
            .await;
        expect_status("invalid app name", reply, &[Code::InvalidArgument], &[])?;
        let reply = admin
            .create_instance(pb::CreateInstanceRequest {
                version: "valkey-1".into(),
                ..create("mini")
            })
            .await;
        expect_status(
            "unknown version",
            reply,
            &[Code::InvalidArgument, Code::FailedPrecondition],
            &["valkey-1"],
        )?;
    }

    {
        tracing::info!(
            "--- update settings: invalid values on a real instance, any change on an unknown one"
        );
        let update = |name: &str| pb::UpdateSettingsRequest {
            name: name.into(),
            ..Default::default()
        };
        let reply = admin
            .update_settings(pb::UpdateSettingsRequest {
                maxmemory_policy: Some("lru".into()),
                ..update(&name)
            })
            .await;
        expect_status(
            "invalid policy update",
            reply,
            &[Code::InvalidArgument],
            &["noeviction"],
        )?;
        let reply = admin
            .update_settings(pb::UpdateSettingsRequest {
                timeout_seconds: Some(u32::MAX),
                ..update(&name)
            })
            .await;
        expect_status(
            "invalid timeout update",
            reply,
            &[Code::InvalidArgument],
            &["timeout"],
        )?;
        let reply = admin
            .update_settings(pb::UpdateSettingsRequest {
                timeout_seconds: Some(60),
                ..update(UNKNOWN_INSTANCE)
            })
            .await;
        expect_status(
            "update of an unknown instance",
            reply,
            &[Code::NotFound],
            &[UNKNOWN_INSTANCE],
        )?;
    }

    {
        tracing::info!("--- unknown instance and unknown app");
        let reference = || pb::InstanceRef {
            name: UNKNOWN_INSTANCE.into(),
        };
        expect_status(
            "GetInstance unknown",
            admin.get_instance(reference()).await,
            &[Code::NotFound],
            &[UNKNOWN_INSTANCE],
        )?;
        expect_status(
            "GetCredentials unknown",
            admin.get_credentials(reference()).await,
            &[Code::NotFound],
            &[],
        )?;
        let destroy = pb::DestroyInstanceRequest {
            name: UNKNOWN_INSTANCE.into(),
            confirm: UNKNOWN_INSTANCE.into(),
        };
        expect_status(
            "Destroy unknown",
            admin.destroy_instance(destroy).await,
            &[Code::NotFound],
            &[],
        )?;
        let reply = admin
            .get_config_vars(pb::AppRef {
                app: "no-such-app".into(),
            })
            .await;
        expect_status(
            "GetConfigVars of an unknown app",
            reply,
            &[Code::NotFound],
            &["no-such-app"],
        )?;
    }

    {
        tracing::info!("--- destroy with a wrong or empty confirmation");
        for confirm in ["redis-wrong-0000", ""] {
            let request = pb::DestroyInstanceRequest {
                name: name.clone(),
                confirm: confirm.into(),
            };
            let reply = admin.destroy_instance(request).await;
            // The request is well-formed but does not confirm *this* instance.
            expect_status(
                "destroy with a wrong confirm",
                reply,
                &[Code::FailedPrecondition],
                &["did not match"],
            )?;
        }
    }

    {
        tracing::info!("--- wrong and missing admin token: UNAUTHENTICATED, even for writes");
        for token in [Some("not-the-token"), Some(""), None] {
            let mut client = cluster.admin_with_token(token)?;
            let reply = client
                .list_instances(pb::ListInstancesRequest::default())
                .await;
            expect_status(
                "ListInstances with a bad token",
                reply,
                &[Code::Unauthenticated],
                &[],
            )?;
            let reply = client.create_instance(create("mini")).await;
            expect_status(
                "CreateInstance with a bad token",
                reply,
                &[Code::Unauthenticated],
                &[],
            )?;
            let destroy = pb::DestroyInstanceRequest {
                name: name.clone(),
                confirm: name.clone(),
            };
            let reply = client.destroy_instance(destroy).await;
            expect_status(
                "DestroyInstance with a bad token",
                reply,
                &[Code::Unauthenticated],
                &[],
            )?;
        }
    }

    {
        tracing::info!("--- nothing changed: same instances, the instance still serves");
        let after = cluster.list_instances("").await?;
        ensure!(
            before == after,
            "ListInstances changed:\nbefore {before:?}\nafter  {after:?}"
        );
        let mut connection = cluster.connect(&name).await?;
        let pong: String = redis::cmd("PING").query_async(&mut connection).await?;
        ensure!(pong == "PONG", "PING: {pong}");
    }

    cluster.stop().await;
    Ok(())
}
