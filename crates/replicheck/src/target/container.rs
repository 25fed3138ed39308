//! A replica template made from a testcontainers image: a team's own description of its
//! service (image, env, command, exposed port, wait strategy). testcontainers starts each
//! replica from it, exactly as the team's other tests would, while the run places it: its
//! name, labels (so a killed run's containers are still found and removed), network,
//! volumes, and its port published on loopback only. The docker backend then treats it
//! as any container of the run: probes it, stops, kills, pauses it through the engine.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use futures_util::future::BoxFuture;

/// Where the run puts one replica's container.
pub struct Placement {
    pub name: String,
    pub labels: HashMap<String, String>,
    pub network: String,
    /// (volume, path inside the container)
    pub volumes: Vec<(String, String)>,
    /// The host address the app's port is published on.
    pub publish_on: IpAddr,
    /// Environment the run adds to the image's (the platform's telemetry settings).
    pub env: Vec<(String, String)>,
}

/// A started container, held while its replica runs; dropping it lets testcontainers
/// remove it (the run removes it too, by its labels).
pub type Started = Box<dyn Any + Send + Sync>;

type Launch = dyn Fn(Placement) -> BoxFuture<'static, Result<Started, String>> + Send + Sync;

/// How the docker backend starts a replica from a testcontainers image. Made with
/// [`ContainerTemplate::new`] (feature `testcontainers`), put into a target with
/// [`Target::with_container`](crate::target::Target::with_container).
#[derive(Clone)]
pub struct ContainerTemplate {
    /// The image, as testcontainers names it (`myapp:1.4`).
    pub image: String,
    /// The app's port inside the container: the one the image exposes.
    pub port: u16,
    launch: Arc<Launch>,
}

impl fmt::Debug for ContainerTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContainerTemplate").field("image", &self.image).field("port", &self.port).finish_non_exhaustive()
    }
}

impl ContainerTemplate {
    /// Starts one replica's container where `placement` says; returns once
    /// testcontainers' wait strategy is met.
    pub(crate) async fn launch(&self, placement: Placement) -> Result<Started, String> {
        (self.launch)(placement).await
    }
}

/// Why an image cannot be a replica's or a dependency's template.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    #[error("the image {image} exposes {} TCP ports ({}); a template needs exactly one, the app's or the service's: with_exposed_port(PORT.tcp())", ports.len(), ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", "))]
    Port { image: String, ports: Vec<u16> },
    #[error("the target declares no [dependencies.{name}] for this container: declare the service there with its `url`, and its container here")]
    Undeclared { name: String },
}

#[cfg(feature = "testcontainers")]
mod with_testcontainers {
    use std::collections::HashMap;

    use bollard::models::PortBinding;
    use testcontainers::core::{ContainerPort, Mount};
    use testcontainers::runners::AsyncRunner;
    use testcontainers::{ContainerRequest, Image, ImageExt};

    use super::{ContainerTemplate, ImageError, Placement, Started};

    impl ContainerTemplate {
        /// A template whose replicas are containers of `request()`: a `GenericImage` or
        /// any `Image`, with what `ImageExt` adds (env, command, wait strategy). It is
        /// called once per replica (and once here, to read the image and its port), since
        /// a testcontainers request starts one container.
        ///
        /// ```
        /// use replicheck::cluster::backend::template::ContainerTemplate;
        /// use testcontainers::core::{IntoContainerPort, WaitFor};
        /// use testcontainers::{GenericImage, ImageExt};
        ///
        /// let template = ContainerTemplate::new(|| {
        ///     GenericImage::new("myapp", "1.4")
        ///         .with_exposed_port(8080.tcp())
        ///         .with_wait_for(WaitFor::message_on_stdout("listening"))
        ///         .with_env_var("DATA_PROTECTION_KEYS", "/replicheck-shared/keys")
        /// })?;
        /// assert_eq!((template.image.as_str(), template.port), ("myapp:1.4", 8080));
        /// # Ok::<(), replicheck::cluster::backend::template::ImageError>(())
        /// ```
        pub fn new<I, R, F>(request: F) -> Result<ContainerTemplate, ImageError>
        where
            I: Image + 'static,
            R: Into<ContainerRequest<I>>,
            F: Fn() -> R + Send + Sync + 'static,
        {
            let first: ContainerRequest<I> = request().into();
            let image = first.descriptor();
            let ports: Vec<u16> = first
                .expose_ports()
                .iter()
                .filter_map(|port| match port {
                    ContainerPort::Tcp(port) => Some(*port),
                    _ => None,
                })
                .collect();
            let [port] = ports[..] else { return Err(ImageError::Port { image, ports }) };
            let launch = move |placement: Placement| {
                let mut request: ContainerRequest<I> = request()
                    .into()
                    .with_container_name(placement.name)
                    .with_network(placement.network)
                    .with_labels(placement.labels);
                for (volume, path) in placement.volumes {
                    request = request.with_mount(Mount::volume_mount(volume, path));
                }
                for (name, value) in placement.env {
                    request = request.with_env_var(name, value);
                }
                // Only the app's port, and on loopback: testcontainers would publish every
                // exposed port on every interface.
                let host_ip = placement.publish_on.to_string();
                let request = request.with_host_config_modifier(move |host| {
                    host.publish_all_ports = Some(false);
                    let binding = PortBinding { host_ip: Some(host_ip.clone()), host_port: Some(String::new()) };
                    host.port_bindings = Some(HashMap::from([(format!("{port}/tcp"), Some(vec![binding]))]));
                });
                Box::pin(async move { request.start().await.map(|container| Box::new(container) as Started).map_err(|e| e.to_string()) })
                    as futures_util::future::BoxFuture<'static, Result<Started, String>>
            };
            Ok(ContainerTemplate { image, port, launch: std::sync::Arc::new(launch) })
        }
    }
}
