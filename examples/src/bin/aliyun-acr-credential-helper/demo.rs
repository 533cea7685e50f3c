//! `demo`: the main flow on embedded defaults. Starts the fake Alibaba Cloud in-process, fetches
//! an Enterprise and a Personal Edition credential through the real client (signed requests over
//! HTTP), and prints the `.dockerconfigjson` it would write, passwords redacted.

use acr_auth_core::acr::{
    enterprise_registry_hosts, personal_registry_hosts, AcrClient, Endpoint, RegistryHost,
};
use acr_auth_core::credentials::Credentials;
use acr_auth_core::docker_config::DockerConfig;
use acr_auth_core::time::format_iso8601;
use acr_auth_testkit::{FakeCloud, FakeCloudConfig};

pub async fn run() -> Result<(), String> {
    let config = FakeCloudConfig::sample();
    let key = &config.access_keys[0];
    let credentials = Credentials::new(&key.id, key.secret.as_str());
    let instance = config.instances[0].clone();
    let region = config.region.clone();
    let cloud = FakeCloud::start(config)
        .await
        .map_err(|e| format!("cannot start the fake cloud: {e}"))?;
    println!("fake Alibaba Cloud listening on {}", cloud.url());

    let client = AcrClient::builder(&region)
        .endpoint(Endpoint::Url(cloud.url()))
        .credentials(credentials)
        .build()
        .map_err(|e| e.to_string())?;

    let mut docker = DockerConfig::default();
    let ee = client
        .get_authorization_token(&instance.id)
        .await
        .map_err(|e| e.to_string())?;
    let ee_hosts = enterprise_registry_hosts(
        &client
            .list_instance_endpoint(&instance.id)
            .await
            .map_err(|e| e.to_string())?,
    );
    println!(
        "Enterprise Edition {} ({}): {} until {}, {} hosts",
        instance.id,
        instance.name,
        ee.username,
        format_iso8601(ee.expires_at),
        ee_hosts.len()
    );
    for host in &ee_hosts {
        docker.insert(host.clone(), ee.username.clone(), ee.password.clone());
    }

    let pe = client
        .get_personal_token()
        .await
        .map_err(|e| e.to_string())?;
    let pe_hosts = personal_registry_hosts(&region);
    println!(
        "Personal Edition {region}: {} until {}, {} hosts",
        pe.username,
        format_iso8601(pe.expires_at),
        pe_hosts.len()
    );
    for host in &pe_hosts {
        docker.insert(host.clone(), pe.username.clone(), pe.password.clone());
    }

    println!("\n.dockerconfigjson (passwords redacted):");
    let pretty: serde_json::Value = serde_json::from_str(&docker.to_json_redacted())
        .map_err(|e| format!("rendered config is not JSON: {e}"))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&pretty).map_err(|e| e.to_string())?
    );

    println!("\nhosts by edition:");
    for host in docker.auths.keys() {
        let kind = match RegistryHost::parse(host) {
            Ok(h) => format!("{:?} / {:?} / {}", h.edition, h.network, h.region),
            Err(_) => "custom domain".to_owned(),
        };
        println!("  {host}: {kind}");
    }
    println!(
        "\nsummary: {} registry hosts, {} ACR API calls, every request signed and verified",
        docker.auths.len(),
        cloud.calls("GetAuthorizationToken")
            + cloud.calls("ListInstanceEndpoint")
            + cloud.calls("GET /tokens")
    );
    Ok(())
}
