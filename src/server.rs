//! Assembles the Pingora server: the gateway service, its background token upkeep and, for
//! `--demo`, the simulated upstream on a loopback port.

use std::sync::Arc;

use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::background_service;

use crate::config::Settings;
use crate::gateway::Gateway;
use crate::pool::cleanup::CleanupService;
use crate::pool::tokens::TokenService;
use crate::proxy::QwenProxy;

/// Points the settings at an in-process simulation of the upstream with one signed-in demo
/// account, and returns the simulation's service to run beside the gateway.
#[cfg(feature = "demo")]
fn demo_upstream(
    settings: &mut Settings,
) -> Result<pingora::services::listening::Service<qwen_sim::SimApp>, String> {
    let port = match std::env::var("DEMO_SIM_PORT") {
        Ok(p) => p
            .parse()
            .map_err(|_| "DEMO_SIM_PORT must be a port number".to_string())?,
        Err(_) => {
            let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            l.local_addr().map_err(|e| e.to_string())?.port()
        }
    };
    let cfg = qwen_sim::SimConfig {
        delta_delay_ms: 30,
        ..Default::default()
    };
    let email = cfg
        .accounts
        .first()
        .map(|a| a.0.clone())
        .unwrap_or_default();
    let sim = qwen_sim::Sim::new(cfg);
    let addr = format!("127.0.0.1:{port}");
    settings.qwen_base_url = format!("http://{addr}");
    settings.qwen_token = Some(sim.mint_token(&email, 30 * 24 * 3600));
    settings.cookies.clear();
    log::info!("demo mode: simulated Qwen upstream on {addr}");
    Ok(sim.service(&addr))
}

/// Builds a ready-to-run server; with `demo`, beside a simulated upstream.
#[allow(unused_mut)]
pub fn build(
    opt: Opt,
    mut settings: Settings,
    demo: bool,
) -> Result<(Server, Arc<Gateway>), String> {
    #[cfg(feature = "demo")]
    let sim_service = if demo {
        Some(demo_upstream(&mut settings)?)
    } else {
        None
    };
    #[cfg(not(feature = "demo"))]
    if demo {
        return Err("this build has no demo mode (built without the `demo` feature)".into());
    }

    let mut server = if opt.conf.is_some() {
        Server::new(Some(opt)).map_err(|e| format!("cannot read the server config: {e}"))?
    } else {
        let conf = ServerConf {
            threads: settings.threads,
            grace_period_seconds: Some(settings.grace_period_secs),
            graceful_shutdown_timeout_seconds: Some(settings.graceful_shutdown_timeout_secs),
            ..ServerConf::default()
        };
        Server::new_with_opt_and_conf(Some(opt), conf)
    };
    server.bootstrap();

    let gw = Gateway::new(settings)?;
    let mut proxy =
        pingora::proxy::http_proxy_service(&server.configuration, QwenProxy::new(gw.clone()));
    // No L4 read buffer: Pingora reads headers and bodies into buffers of its own anyway, and a
    // zeroed buffer per connection (64 KiB by default) is memory every open stream pays for.
    proxy.add_listener(
        pingora::listeners::ListenerConfig::tcp(gw.settings.listen.clone())
            .l4_buffer(pingora::listeners::L4BufferSettings::default().read(0)),
    );
    server.add_service(proxy);
    if let Some(addr) = &gw.settings.metrics_listen {
        let mut prom = pingora_prometheus::prometheus_http_service();
        prom.add_tcp(addr);
        server.add_service(prom);
    }
    server.add_service(background_service(
        "tokens",
        TokenService { gw: gw.clone() },
    ));
    server.add_service(background_service(
        "chat cleanup",
        CleanupService { gw: gw.clone() },
    ));
    if gw.state.shared().is_some() {
        server.add_service(background_service(
            "shared state",
            crate::shared::sync::SharedService { gw: gw.clone() },
        ));
    } else if crate::store::saves_usage(&gw) {
        // With shared state, usage goes to Redis as it happens instead.
        server.add_service(background_service(
            "data flush",
            crate::store::FlushService { gw: gw.clone() },
        ));
    }
    #[cfg(feature = "demo")]
    if let Some(s) = sim_service {
        server.add_service(s);
    }
    Ok((server, gw))
}
