//! What to change in the app so a probable root cause goes away, for each framework.
//!
//! The fix for a cause is one idea everywhere (share the keys, move the state out of the
//! process, hold the shutdown until the balancer has let go), but people act on the name
//! of a setting, an API or a package they can search their own code for. So every
//! framework preset has its own text naming those, and `Generic` states the idea for
//! stacks without a preset. Texts are plain sentences: reports render them as they are.

use super::cause::Cause;
use crate::target::Preset;

/// What to change so the cause goes away, for the target's framework; `Preset::Generic`
/// gives the framework-neutral remedy.
pub fn remedy(cause: Cause, preset: Preset) -> &'static str {
    match cause {
        Cause::KeysNotShared => keys_not_shared(preset),
        Cause::KeysNotPersisted => keys_not_persisted(preset),
        Cause::KeyringRace => keyring_race(preset),
        Cause::MigrationsRace => migrations_race(preset),
        Cause::SessionPerProcess => session_per_process(preset),
        Cause::CachePerProcess => cache_per_process(preset),
        Cause::SigningKeysNotShared => signing_keys_not_shared(preset),
        Cause::ForwardedHeadersIgnored => forwarded_headers_ignored(preset),
        Cause::ForwardedHeadersTrusted => forwarded_headers_trusted(preset),
        Cause::RefusesWhileRouted => refuses_while_routed(preset),
        Cause::ReadyTooEarly => ready_too_early(preset),
        Cause::ReadinessIgnoresState => readiness_ignores_state(preset),
        Cause::InflightCut => inflight_cut(preset),
        Cause::ShutdownOverGrace => shutdown_over_grace(preset),
        Cause::StoreNotDurable => store_not_durable(preset),
        Cause::StatePerReplica => state_per_replica(preset),
        Cause::NeedsPrivileges => needs_privileges(preset),
        Cause::TelemetryResource => telemetry_resource(preset),
        Cause::TraceContextDropped => trace_context_dropped(preset),
        Cause::TelemetryNotExported => telemetry_not_exported(preset),
        Cause::ScheduledJobPerReplica => scheduled_job_per_replica(preset),
        Cause::InProcessQueue => in_process_queue(preset),
        Cause::UnclaimedOutbox => unclaimed_outbox(preset),
        Cause::JobAbandonedAtShutdown => job_abandoned(preset),
        Cause::BroadcastPerProcess => broadcast_per_process(preset),
        Cause::RelayNotResumed => relay_not_resumed(preset),
        Cause::TransportNeedsAffinity => transport_needs_affinity(preset),
        Cause::LimitPerProcess => limit_per_process(preset),
        Cause::LimitKeyedOnProxy => limit_keyed_on_proxy(preset),
        Cause::LimitKeyForgeable => limit_key_forgeable(preset),
        Cause::UploadsOnLocalDisk => uploads_on_local_disk(preset),
    }
}

fn keys_not_shared(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Give every replica one key ring: AddDataProtection().SetApplicationName(...) with the same name \
             everywhere, plus PersistKeysToStackExchangeRedis or PersistKeysToDbContext on a store they all reach. \
             Auth cookies, antiforgery tokens and TempData are all protected with these keys."
        }
        Preset::Django => {
            "Read SECRET_KEY from an environment variable or secret that every replica gets, instead of calling \
             get_random_secret_key() in settings or baking a different value into each image. Session auth hashes, \
             signed cookies and password reset tokens all depend on it."
        }
        Preset::Flask => {
            "Load SECRET_KEY from config or the environment (app.config.from_prefixed_env() reads FLASK_SECRET_KEY) \
             instead of os.urandom() at import, which gives each replica and each worker a key of its own. The session \
             cookie, Flask-Login's remember cookie and Flask-WTF's CSRF token all depend on it."
        }
        Preset::Rails => {
            "Give every replica the same secret_key_base: the same credentials file and RAILS_MASTER_KEY, or one \
             SECRET_KEY_BASE secret. Never generate it in the entrypoint (bin/rails secret); the encrypted session \
             cookie, and the authenticity token kept in it, depend on it."
        }
        Preset::Pyramid => {
            "Pass the same secret to SignedCookieSessionFactory and to AuthTktCookieHelper (or \
             AuthTktAuthenticationPolicy) on every replica, read from the .ini settings filled from the environment, \
             not made with os.urandom() in main(). The session CSRF token is only as shared as the session."
        }
        Preset::Spring => {
            "Share what protects logins and forms: keep HttpSession, which holds the security context and the default \
             CSRF token, in Spring Session with Redis or JDBC, and set rememberMe().key(...) from configuration, since \
             without a key Spring makes a random one in each instance."
        }
        Preset::Express => {
            "Give express-session the same secret on every replica, from process.env, not crypto.randomBytes() at \
             start; the same goes for cookie-session keys and the cookie-parser secret. csurf keeps its secret in the \
             session or a signed cookie, so it follows."
        }
        Preset::Generic => {
            "Give every replica the same keys for signing and encrypting cookies and form tokens, from one secret or a \
             shared key store, instead of keys each process makes for itself."
        }
    }
}

fn migrations_race(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Apply EF Core migrations once per deployment: a migration bundle (dotnet ef migrations bundle) run by a \
             Kubernetes Job or init container, not Database.Migrate() or EnsureCreated() at the start of every replica."
        }
        Preset::Django => {
            "Run manage.py migrate once per deployment (a Kubernetes Job, a release phase, a pre-upgrade hook), not in \
             every replica's entrypoint: migrate takes no lock, so replicas that run it together race on the same tables."
        }
        Preset::Flask => {
            "Run flask db upgrade (Flask-Migrate, Alembic) once per deployment in a Job or init step, not in every \
             replica's start command or db.create_all() at import; if it must run at start, hold pg_advisory_lock around it."
        }
        Preset::Rails => {
            "Run bin/rails db:migrate once per deployment (a release task, a Kubernetes Job), not db:prepare in every \
             replica's entrypoint: Rails' migration lock makes the replicas that lose the race fail with \
             ConcurrentMigrationError."
        }
        Preset::Pyramid => {
            "Run alembic upgrade head once per deployment in a Job or init step, not in every replica's main() or \
             metadata.create_all() at start; if it must run at start, hold pg_advisory_lock around it."
        }
        Preset::Spring => {
            "Let Flyway or Liquibase migrate (they lock their history table), or run them as a Job before the \
             replicas start; not a hand-written schema.sql with spring.sql.init.mode=always in every replica."
        }
        Preset::Express => {
            "Run the migration tool (knex migrate:latest, prisma migrate deploy, sequelize db:migrate) once per \
             deployment in a Job or init step, not a hand-written CREATE TABLE in every replica's start script."
        }
        Preset::Generic => {
            "Run migrations and other one-time setup once per deployment (a Kubernetes Job, an init step, a release \
             phase), or behind a lock every replica takes first (a PostgreSQL advisory lock, the migration tool's own); \
             never unguarded in every replica's entrypoint."
        }
    }
}

fn keyring_race(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Create the key ring once before the replicas start: a deploy step or init job that runs Data Protection \
             against the shared store (PersistKeysToStackExchangeRedis, PersistKeysToDbContext) creates the first key, \
             and the replicas run with KeyManagementOptions.AutoGenerateKeys = false so none makes a key of its own on \
             first use."
        }
        Preset::Django => {
            "Make SECRET_KEY a deploy-time secret every replica reads from the environment, not one settings.py writes \
             to a shared file when it finds none there: replicas that start together each write their own."
        }
        Preset::Flask => {
            "Make SECRET_KEY a deploy-time secret (FLASK_SECRET_KEY through app.config.from_prefixed_env()), not one \
             the app writes to a shared instance-folder file when it finds none: replicas that start together each \
             write their own."
        }
        Preset::Rails => {
            "Set SECRET_KEY_BASE or RAILS_MASTER_KEY for every replica. A secret Rails generates on first use into \
             tmp/ (local_secret.txt) is made by each replica that starts before the file exists, even when tmp/ is \
             shared."
        }
        Preset::Pyramid => {
            "Read the session and auth secrets from the .ini settings filled from the environment at deploy time, not \
             from a shared file main() writes when it finds none: replicas that start together each write their own."
        }
        Preset::Spring => {
            "Configure the remember-me key and any token signing keys from configuration at deploy time; if a key is \
             kept in a shared table, create it in a migration or an init job, not on first use in each instance."
        }
        Preset::Express => {
            "Give session and cookie secrets from the environment at deploy time, not a secret the app writes to a \
             shared file or key on first start when it finds none: replicas that start together each write their own."
        }
        Preset::Generic => {
            "Create the keys once before the replicas start (a deploy step or init job), or make their creation \
             atomic (create only if absent, under a lock or a compare-and-set, then read back what the store holds), \
             and have replicas reload the key ring when they meet a key id they do not know."
        }
    }
}

fn keys_not_persisted(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Without a configured store the key ring lives in memory or under ~/.aspnet/DataProtection-Keys in the \
             container, and dies with it. Persist it with PersistKeysToDbContext, PersistKeysToStackExchangeRedis or \
             PersistKeysToFileSystem on a mounted volume, and protect it at rest (ProtectKeysWithCertificate)."
        }
        Preset::Django => {
            "Stop generating SECRET_KEY at startup (get_random_secret_key(), a file written inside the container); \
             supply it from the environment or a secret manager so it survives restarts. To rotate, move the old value \
             to SECRET_KEY_FALLBACKS (Django 4.1+) until its sessions expire."
        }
        Preset::Flask => {
            "A SECRET_KEY made with os.urandom() or secrets.token_hex() when the app starts changes on every restart; \
             load a fixed one from config or the environment. To rotate, keep the old key in SECRET_KEY_FALLBACKS \
             (Flask 3.1.1+); extensions such as Flask-WTF may not read it."
        }
        Preset::Rails => {
            "Set secret_key_base from credentials or SECRET_KEY_BASE rather than letting it be generated into a file \
             under tmp/ (development) or set from a throwaway value in the entrypoint, which a restart loses. To \
             rotate, add the old secret through config.action_dispatch.cookies_rotations."
        }
        Preset::Pyramid => {
            "Keep the session and auth ticket secrets in the .ini settings or the environment rather than generating \
             them when main() builds the Configurator, so a restarted process still verifies the cookies it signed \
             before."
        }
        Preset::Spring => {
            "Set rememberMe().key(...) from configuration (the default is random on every start) and move sessions out \
             of the JVM with Spring Session (spring-session-data-redis or spring-session-jdbc), so the security \
             context and CSRF token survive a restart."
        }
        Preset::Express => {
            "A secret generated at start changes on every restart; read it from process.env instead. To rotate, pass \
             express-session an array of secrets with the new one first: it signs with the first and still accepts \
             cookies signed with the others."
        }
        Preset::Generic => {
            "Keep the keys that protect cookies and form tokens outside the process, in a secret, a database or a \
             persistent shared store, so a restarted replica still reads what it issued. Rotate by adding a key while \
             the old one still verifies."
        }
    }
}

fn session_per_process(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Session state is stored through IDistributedCache, and AddDistributedMemoryCache keeps it in each \
             process: register AddStackExchangeRedisCache (or AddDistributedSqlServerCache) instead. The session \
             cookie is protected by Data Protection, so share that key ring too."
        }
        Preset::Django => {
            "Use SESSION_ENGINE django.contrib.sessions.backends.db or cached_db on the shared database, or \
             backends.cache with a CACHES entry on Redis. The cache engine on LocMemCache, the file engine on local \
             disk or a SQLite database per replica keep each session on one replica."
        }
        Preset::Flask => {
            "Either keep Flask's default signed-cookie session with a shared SECRET_KEY, or with Flask-Session set \
             SESSION_TYPE = 'redis' and SESSION_REDIS to the shared Redis, instead of SESSION_TYPE = 'filesystem' or \
             cachelib's FileSystemCache on the replica's local disk."
        }
        Preset::Rails => {
            "Keep the default cookie store with a shared secret_key_base, or put sessions in a shared store: \
             session_store :cache_store on :redis_cache_store, or the activerecord-session_store gem. A cache store on \
             :memory_store or :file_store keeps sessions per replica."
        }
        Preset::Pyramid => {
            "Keep SignedCookieSessionFactory with a shared secret, or keep sessions server-side in Redis with \
             pyramid_session_redis. pyramid_beaker with session.type = memory, or file on local disk, keeps them per \
             replica."
        }
        Preset::Spring => {
            "Add Spring Session with spring-session-data-redis or spring-session-jdbc so HttpSession lives in Redis or \
             the database instead of each embedded Tomcat's memory; set spring.session.jdbc.initialize-schema if the \
             tables do not exist yet."
        }
        Preset::Express => {
            "express-session's default MemoryStore keeps sessions in one process (and leaks memory); pass a shared \
             store such as connect-redis, connect-pg-simple or connect-mongo as the store option."
        }
        Preset::Generic => {
            "Keep sessions in a store every replica reaches, such as Redis or the database, or in a signed (and, if \
             sensitive, encrypted) cookie whose key all replicas share. Process memory and local files serve one \
             replica only."
        }
    }
}

fn cache_per_process(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "AddDistributedMemoryCache and IMemoryCache are per process despite the name of the first: register \
             AddStackExchangeRedisCache (with an InstanceName prefix) and read and write entries that must agree \
             through IDistributedCache."
        }
        Preset::Django => {
            "Set CACHES['default'] to django.core.cache.backends.redis.RedisCache (Django 4.0+) or PyMemcacheCache \
             with a shared LOCATION; without CACHES Django uses LocMemCache, which each process keeps for itself."
        }
        Preset::Flask => {
            "Configure Flask-Caching with CACHE_TYPE = 'RedisCache' and CACHE_REDIS_URL instead of SimpleCache, and \
             drop module-level dicts or functools.lru_cache for data that must agree across replicas."
        }
        Preset::Rails => {
            "Set config.cache_store = :redis_cache_store (or :mem_cache_store, or Solid Cache on the shared database) \
             instead of :memory_store or :file_store, so Rails.cache reads the same entries on every replica."
        }
        Preset::Pyramid => {
            "Configure dogpile.cache regions with the dogpile.cache.redis backend (or Beaker's cache on a shared \
             server) instead of dogpile.cache.memory, and keep no shared data in module-level dicts."
        }
        Preset::Spring => {
            "Back @Cacheable with a shared cache: spring-boot-starter-data-redis with spring.cache.type=redis, instead \
             of the default ConcurrentMapCacheManager or Caffeine, which keep entries in each JVM."
        }
        Preset::Express => {
            "Replace in-process caches (a module-level Map, node-cache, lru-cache) with Redis through node-redis or \
             ioredis, so every replica and every cluster worker reads the same entries."
        }
        Preset::Generic => {
            "Put entries that must agree across replicas in a shared cache such as Redis or Memcached; keep in-process \
             caches only for data that may differ per replica for a while, with a short expiry."
        }
    }
}

fn signing_keys_not_shared(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Load the token signing key from configuration or a key vault on every replica instead of creating it at \
             startup (RSA.Create()). With Duende IdentityServer's automatic key management, keep keys in a shared \
             store such as the EF operational store, and share the Data Protection keys that encrypt them."
        }
        Preset::Django => {
            "Give every replica the same signing key from the environment: SIMPLE_JWT's SIGNING_KEY (and VERIFYING_KEY \
             for RS256) with djangorestframework-simplejwt, or OAUTH2_PROVIDER's OIDC_RSA_PRIVATE_KEY with \
             django-oauth-toolkit, never a key generated when settings load."
        }
        Preset::Flask => {
            "Give every replica the same key from config or the environment: Flask-JWT-Extended's JWT_SECRET_KEY, or \
             JWT_PRIVATE_KEY and JWT_PUBLIC_KEY for RS256, not one generated at import. If you publish a JWKS, serve \
             the same key set from every replica."
        }
        Preset::Rails => {
            "Load the signing key from credentials or the environment on every replica (devise-jwt's jwt.secret, \
             doorkeeper-openid_connect's signing_key, the key you pass to JWT.encode) instead of \
             OpenSSL::PKey::RSA.generate at boot."
        }
        Preset::Pyramid => {
            "Read the JWT signing key from the .ini settings, filled from the environment, on every replica (the \
             private key you give pyramid_jwt or PyJWT's jwt.encode) instead of creating one in main()."
        }
        Preset::Spring => {
            "Spring Authorization Server's sample JWKSource bean generates an RSA key at startup: load the key pair \
             from a keystore or secret instead, the same on every replica. Replace InMemoryOAuth2AuthorizationService \
             with JdbcOAuth2AuthorizationService too."
        }
        Preset::Express => {
            "Sign with a key every replica loads from the environment or a secret store (jsonwebtoken's jwt.sign, \
             jose's importPKCS8) instead of crypto.generateKeyPairSync at start, and serve the same JWKS from every \
             replica."
        }
        Preset::Generic => {
            "Sign tokens with keys all replicas load from one secret or key store, and publish the same key set (JWKS) \
             from each; never generate a key at start. Rotate by publishing a new key before signing with it."
        }
    }
}

fn forwarded_headers_ignored(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Call app.UseForwardedHeaders() before other middleware with ForwardedHeaders = XForwardedFor | \
             XForwardedProto, and add the balancer to KnownProxies or KnownNetworks (KnownIPNetworks from .NET 10): by \
             default only loopback proxies are trusted."
        }
        Preset::Django => {
            "Set SECURE_PROXY_SSL_HEADER = ('HTTP_X_FORWARDED_PROTO', 'https') and list the public origin in \
             CSRF_TRUSTED_ORIGINS. Django leaves REMOTE_ADDR as the proxy's, so take the client address from \
             X-Forwarded-For in a middleware or with django-ipware."
        }
        Preset::Flask => {
            "Wrap the app in werkzeug's ProxyFix: app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1), with each \
             count equal to the number of proxies in front of the app, so request.scheme and request.remote_addr are \
             the client's."
        }
        Preset::Rails => {
            "Add the balancer to config.action_dispatch.trusted_proxies if it is outside the private ranges trusted by \
             default, so request.remote_ip reads X-Forwarded-For; have it send X-Forwarded-Proto, or set \
             config.assume_ssl = true when it terminates TLS."
        }
        Preset::Pyramid => {
            "Tell waitress about the balancer in the [server:main] section: trusted_proxy = its address, \
             trusted_proxy_headers = x-forwarded-for x-forwarded-proto, and trusted_proxy_count = the number of \
             proxies, so request.scheme and request.remote_addr are the client's."
        }
        Preset::Spring => {
            "Set server.forward-headers-strategy=native (or framework, for ForwardedHeaderFilter) and, if the \
             balancer's address is not in the private ranges Tomcat trusts by default, add it to \
             server.tomcat.remoteip.internal-proxies."
        }
        Preset::Express => {
            "Set app.set('trust proxy', ...) to the balancer's address or subnet, or the number of hops, so req.ip, \
             req.protocol and req.secure come from X-Forwarded-For and X-Forwarded-Proto; express-session needs it to \
             send secure cookies."
        }
        Preset::Generic => {
            "Take the scheme and client address from X-Forwarded-Proto and X-Forwarded-For (or Forwarded) when the \
             request comes from the balancer, so redirects, secure cookies and client addresses are right."
        }
    }
}

fn forwarded_headers_trusted(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Do not clear KnownProxies and KnownNetworks or set ASPNETCORE_FORWARDEDHEADERS_ENABLED, which both accept \
             forwarded headers from anyone; list only the balancer's addresses and set ForwardLimit to the number of \
             proxies."
        }
        Preset::Django => {
            "SECURE_PROXY_SSL_HEADER believes any client that sends the header, so make the balancer overwrite \
             X-Forwarded-Proto and X-Forwarded-For, keep the app reachable only through it, and read the client \
             address from the entry the balancer appended, not the first."
        }
        Preset::Flask => {
            "Set ProxyFix's x_for, x_proto and x_host to exactly the number of proxies in front of the app; larger \
             counts let a client's own X-Forwarded-* values through. With gunicorn, set --forwarded-allow-ips to the \
             balancer, not '*'."
        }
        Preset::Rails => {
            "List only the balancer in config.action_dispatch.trusted_proxies, never a range that covers clients, read \
             the client address from request.remote_ip rather than the raw header, and make the balancer overwrite \
             X-Forwarded-Proto."
        }
        Preset::Pyramid => {
            "Set waitress's trusted_proxy to the balancer's address, not '*', trusted_proxy_count to the number of \
             proxies, and clear_untrusted_proxy_headers = true so forwarded headers from anyone else are dropped."
        }
        Preset::Spring => {
            "Prefer server.forward-headers-strategy=native with server.tomcat.remoteip.internal-proxies narrowed to \
             the balancer; the framework strategy's ForwardedHeaderFilter applies the headers from any client, so use \
             it only behind a balancer that overwrites them."
        }
        Preset::Express => {
            "Replace app.set('trust proxy', true) with the balancer's addresses or subnet, or the exact number of \
             hops, so a client's own X-Forwarded-For and X-Forwarded-Proto cannot set req.ip or req.protocol."
        }
        Preset::Generic => {
            "Trust forwarded headers only from the balancer's addresses, count exactly as many hops as there are \
             proxies, and make the balancer overwrite these headers rather than pass on what clients send."
        }
    }
}

fn refuses_while_routed(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Kestrel stops accepting connections once the host shuts down at SIGTERM, so delay the signal: a \
             Kubernetes preStop sleep longer than the balancer's deregistration delay (or a short wait in an \
             ApplicationStopping callback), with terminationGracePeriodSeconds raised to cover it."
        }
        Preset::Django => {
            "gunicorn, a pre-fork server, closes its listening sockets the moment it gets SIGTERM; add a Kubernetes \
             preStop sleep longer than the balancer's deregistration delay so the signal comes after traffic has \
             moved, and raise terminationGracePeriodSeconds to cover it."
        }
        Preset::Flask => {
            "Pre-fork servers such as gunicorn close their listener at SIGTERM, and flask run is not for production; \
             delay the signal with a Kubernetes preStop sleep longer than the deregistration delay, and raise \
             terminationGracePeriodSeconds to match."
        }
        Preset::Rails => {
            "Puma stops listening when it gets SIGTERM; add a Kubernetes preStop sleep longer than the balancer's \
             deregistration delay so the signal arrives after traffic has moved, and set terminationGracePeriodSeconds \
             above the sleep plus the drain."
        }
        Preset::Pyramid => {
            "waitress and gunicorn both stop listening once SIGTERM arrives; add a Kubernetes preStop sleep longer \
             than the balancer's deregistration delay, and size terminationGracePeriodSeconds to cover the sleep and \
             the drain."
        }
        Preset::Spring => {
            "Spring Boot's web server stops taking requests as soon as shutdown begins; add a Kubernetes preStop sleep \
             longer than the deregistration delay, and keep terminationGracePeriodSeconds above the sleep plus \
             spring.lifecycle.timeout-per-shutdown-phase."
        }
        Preset::Express => {
            "On SIGTERM keep serving for longer than the balancer's deregistration delay (or use a preStop sleep), \
             then call server.close() and exit when it completes, instead of calling process.exit() at once."
        }
        Preset::Generic => {
            "Keep accepting connections until the balancer stops routing: delay shutdown with a Kubernetes preStop \
             sleep longer than the deregistration delay, and terminationGracePeriodSeconds to cover it. Pre-fork \
             servers such as gunicorn and puma close their listener at SIGTERM."
        }
    }
}

fn ready_too_early(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Point the readiness probe at MapHealthChecks with a Predicate that runs only checks tagged ready, \
             including one that stays Unhealthy until migrations and warm-up finish, instead of a liveness or root \
             URL."
        }
        Preset::Django => {
            "Serve readiness from a view that returns 503 until migrations and warm-up are done and the database and \
             cache answer (django-health-check can run the checks), and point the probe there, not at the port or a \
             static page."
        }
        Preset::Flask => {
            "Add a readiness route that returns 503 until setup and warm-up finish and the database and Redis answer \
             (a SELECT 1 through db.session, a Redis PING), and point the probe there rather than at the index page or \
             the port."
        }
        Preset::Rails => {
            "Rails' /up only says the app booted; add a readiness route that also runs a query through Active Record, \
             pings Redis, and returns 503 until warm-up is done, and point the probe there."
        }
        Preset::Pyramid => {
            "Add a readiness view that returns 503 until setup and warm-up finish and the database session and Redis \
             answer, and point the probe there rather than at the port or a static asset."
        }
        Preset::Spring => {
            "Probe /actuator/health/readiness (management.endpoint.health.probes.enabled=true off Kubernetes), which \
             turns ACCEPTING_TRAFFIC only after the application and command-line runners have run; do warm-up in an \
             ApplicationRunner, not a background thread."
        }
        Preset::Express => {
            "Call app.listen() only after the database, Redis and warm-up are ready, or serve a readiness route that \
             returns 503 until then, and point the probe at it rather than at the port."
        }
        Preset::Generic => {
            "Report ready only once the app can serve: after migrations, warm-up and connecting to its dependencies, \
             from a readiness endpoint separate from liveness, not the bare port or a static page."
        }
    }
}

fn readiness_ignores_state(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Tag dependency checks for readiness (AddDbContextCheck<T>(), AddRedis from AspNetCore.HealthChecks.Redis) \
             and report Unhealthy once IHostApplicationLifetime.ApplicationStopping fires, so the probe fails while a \
             dependency is down or the replica drains."
        }
        Preset::Django => {
            "Make the readiness view run connection.ensure_connection() and a cache round trip on every probe and \
             return 503 when either fails; a view that always returns 200 keeps a broken replica in rotation."
        }
        Preset::Flask => {
            "Make the readiness route check its dependencies on every probe (a SELECT 1, a Redis PING) and return 503 \
             when one fails, instead of a route that always returns 200."
        }
        Preset::Rails => {
            "/up keeps answering 200 while the database or Redis is down; point readiness at a route that checks them \
             on every probe (the health_check gem can run them) and returns 503 when one fails."
        }
        Preset::Pyramid => {
            "Make the readiness view query the database and ping Redis on every probe and return a 503 response when \
             either fails, rather than a view that always answers 200."
        }
        Preset::Spring => {
            "Add the dependencies to the readiness group, e.g. \
             management.endpoint.health.group.readiness.include=readinessState,db,redis, so /actuator/health/readiness \
             fails with them; by default it reflects only the application's readiness state."
        }
        Preset::Express => {
            "Make the readiness route check dependencies on every probe (a SELECT 1, a Redis ping) and return 503 once \
             one fails or SIGTERM has arrived; a handler that always sends 200 keeps the replica in rotation."
        }
        Preset::Generic => {
            "Make readiness check what serving needs (database, cache, shared store) on every probe and fail while the \
             replica drains, so the balancer takes it out; keep liveness free of dependency checks."
        }
    }
}

fn inflight_cut(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Let the host drain: set HostOptions.ShutdownTimeout above the longest request, never call \
             Environment.Exit from a signal handler, and keep terminationGracePeriodSeconds above any preStop sleep \
             plus that timeout."
        }
        Preset::Django => {
            "Serve with gunicorn started in exec form so SIGTERM reaches it, not manage.py runserver or a sh -c \
             wrapper; it finishes running requests within --graceful-timeout, so set that above the longest request \
             and the grace period above it."
        }
        Preset::Flask => {
            "Serve with gunicorn started in exec form so SIGTERM reaches it, not flask run or a sh -c wrapper, and set \
             --graceful-timeout above the longest request so workers finish what they hold before exiting."
        }
        Preset::Rails => {
            "Start puma in exec form so SIGTERM reaches it rather than a sh -c wrapper; it finishes requests in \
             flight, so keep worker_shutdown_timeout (cluster mode) above the longest request and \
             terminationGracePeriodSeconds above the preStop sleep plus it."
        }
        Preset::Pyramid => {
            "Make sure the WSGI server gets SIGTERM (exec form) and drains: gunicorn --paste production.ini finishes \
             running requests within --graceful-timeout, so set that above the longest request."
        }
        Preset::Spring => {
            "Set server.shutdown=graceful and spring.lifecycle.timeout-per-shutdown-phase above the longest request, \
             run java in exec form so it gets SIGTERM, and never call System.exit from request handling."
        }
        Preset::Express => {
            "On SIGTERM call server.close() so requests in flight finish (closeIdleConnections() frees idle keep-alive \
             sockets), and exit in its callback, not with process.exit(); start node directly, not through npm start."
        }
        Preset::Generic => {
            "On SIGTERM stop taking new connections but finish the requests in flight before exiting, make sure the \
             signal reaches the server process (exec form, not a shell wrapper), and size the grace period to match."
        }
    }
}

fn shutdown_over_grace(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Honour the stoppingToken in every BackgroundService and keep HostOptions.ShutdownTimeout plus any preStop \
             sleep below terminationGracePeriodSeconds, or raise the grace period to what shutdown needs."
        }
        Preset::Django => {
            "Keep gunicorn's --graceful-timeout (30 s by default) plus any preStop sleep below \
             terminationGracePeriodSeconds (also 30 s by default), and bound long views; or raise the grace period to \
             match."
        }
        Preset::Flask => {
            "Keep gunicorn's --graceful-timeout plus any preStop sleep below terminationGracePeriodSeconds, bound long \
             requests, and stop background threads so the process can exit; or raise the grace period to match."
        }
        Preset::Rails => {
            "Keep puma's worker_shutdown_timeout plus any preStop sleep below terminationGracePeriodSeconds, bound \
             long requests (e.g. with rack-timeout), and stop background threads when puma shuts down."
        }
        Preset::Pyramid => {
            "Keep the server's drain (gunicorn's --graceful-timeout) plus any preStop sleep below \
             terminationGracePeriodSeconds, and stop threads or schedulers started in main() when the process is told \
             to stop."
        }
        Preset::Spring => {
            "Keep spring.lifecycle.timeout-per-shutdown-phase (30 s by default), @PreDestroy and SmartLifecycle.stop \
             work and any preStop sleep within terminationGracePeriodSeconds; bound executors with \
             setAwaitTerminationSeconds."
        }
        Preset::Express => {
            "Bound the SIGTERM handler: close the server, the database pool and the Redis client, and force an exit \
             with an unref()'d timer shorter than the grace period minus the preStop sleep, so keep-alive or WebSocket \
             connections cannot hold it open."
        }
        Preset::Generic => {
            "Bound every shutdown step (draining requests, stopping background work, closing pools) so the total, plus \
             any preStop sleep, stays under the grace period, or raise terminationGracePeriodSeconds to what shutdown \
             needs."
        }
    }
}

fn store_not_durable(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Turn on Redis persistence (appendonly yes, or RDB snapshots on a volume) for the instance \
             PersistKeysToStackExchangeRedis writes to, or keep the key ring in a database with \
             PersistKeysToDbContext; sessions in Redis need the same."
        }
        Preset::Django => {
            "If sessions or entries the app needs live in Redis, turn on AOF or RDB snapshots on a volume, or use \
             SESSION_ENGINE django.contrib.sessions.backends.cached_db so the database keeps sessions and Redis only \
             speeds reads."
        }
        Preset::Flask => {
            "If Flask-Session or Flask-Caching keeps what users need in Redis, turn on AOF or RDB snapshots on a \
             volume, or keep sessions in the database with Flask-Session's SESSION_TYPE = 'sqlalchemy'."
        }
        Preset::Rails => {
            "If sessions or entries users need sit in Redis (:redis_cache_store, redis-session-store), turn on AOF or \
             RDB snapshots on a volume, or keep them in the database with activerecord-session_store or Solid Cache."
        }
        Preset::Pyramid => {
            "If pyramid_session_redis or a dogpile.cache.redis region holds what users need, turn on Redis AOF or RDB \
             snapshots on a volume, or keep sessions in the database so a Redis restart costs only cache."
        }
        Preset::Spring => {
            "If Spring Session or the cache keeps what users need in Redis, turn on AOF or RDB snapshots on a volume, \
             or move sessions to spring-session-jdbc so the database keeps them."
        }
        Preset::Express => {
            "If connect-redis holds sessions, turn on Redis persistence (appendonly yes, or RDB snapshots) on a \
             volume, or keep sessions in a database through connect-pg-simple or connect-mongo."
        }
        Preset::Generic => {
            "Make the shared store durable: turn on Redis persistence (AOF, or RDB snapshots) on a volume that \
             outlives the container, or keep keys and sessions in a database; keep volatile stores for what can be \
             rebuilt."
        }
    }
}

fn needs_privileges(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Run as the image's non-root user (USER app, or $APP_UID in the .NET 8+ images) and write nothing \
             under the app's directory: keys go to the configured Data Protection store, files to a mounted volume, \
             temporary files to /tmp (an emptyDir); listen on a port above 1024 (ASPNETCORE_HTTP_PORTS=8080)."
        }
        Preset::Django => {
            "Write nothing next to the code: MEDIA_ROOT and file-based caches on a mounted volume, STATIC_ROOT \
             collected at image build time, logs to stdout, temporary files in /tmp; run gunicorn as a non-root user on \
             a port above 1024."
        }
        Preset::Flask => {
            "Write nothing into the app or instance folder at run time: uploads to a mounted volume, logs to stdout, \
             temporary files to /tmp; run the WSGI server as a non-root user on a port above 1024."
        }
        Preset::Rails => {
            "Keep log/, tmp/ and storage/ on mounted volumes (or RAILS_LOG_TO_STDOUT and tmp on an emptyDir), \
             precompile assets and bootsnap's cache at build time, and run puma as the image's non-root user on a port \
             above 1024."
        }
        Preset::Pyramid => {
            "Write nothing next to the code at run time: session files, uploads and caches on a mounted volume, logs \
             to stdout, temporary files in /tmp; serve with a non-root user on a port above 1024."
        }
        Preset::Spring => {
            "Give the JVM a writable /tmp (server.tomcat.basedir and java.io.tmpdir there), log to stdout rather than \
             files, keep uploads on a mounted volume, and run as a non-root user on a port above 1024."
        }
        Preset::Express => {
            "Run node as the image's non-root user (USER node), write uploads and session files to a mounted volume \
             and logs to stdout, and listen on a port above 1024."
        }
        Preset::Generic => {
            "Make the app run as a restricted platform runs it: as a user that is not root, with no extra \
             capabilities, writing only to /tmp and to mounted volumes (logs to stdout), and listening on a port \
             above 1024."
        }
    }
}

fn telemetry_resource(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Call ConfigureResource(r => r.AddService(serviceName: \"...\")) with one name for every replica and \
             leave autoGenerateServiceInstanceId on (or take the instance id from OTEL_RESOURCE_ATTRIBUTES, which \
             AddEnvironmentVariableDetector reads); never derive the service name from Environment.MachineName."
        }
        Preset::Django | Preset::Flask | Preset::Pyramid => {
            "Build the TracerProvider's resource with Resource.create({...}), which merges OTEL_SERVICE_NAME and \
             OTEL_RESOURCE_ATTRIBUTES, not with Resource(attributes=...), which ignores them; name the service once \
             (not after the host or the pid) and leave service.instance.id to the platform, or set it from the pod \
             name or a uuid4() made at start."
        }
        Preset::Rails => {
            "In OpenTelemetry::SDK.configure, set c.service_name once for every replica (or leave it to \
             OTEL_SERVICE_NAME), and keep OTEL_RESOURCE_ATTRIBUTES' service.instance.id: do not replace the resource \
             with one built from a constant."
        }
        Preset::Spring => {
            "Set otel.service.name (or spring.application.name) the same on every replica, and let the Java agent or \
             the starter read service.instance.id from OTEL_RESOURCE_ATTRIBUTES; never put a fixed \
             otel.resource.attributes=service.instance.id=... in application.properties."
        }
        Preset::Express => {
            "Give NodeSDK one serviceName and let it read OTEL_RESOURCE_ATTRIBUTES (envDetector), or add \
             service.instance.id from the pod name or randomUUID() at start; do not name the service after \
             os.hostname()."
        }
        Preset::Generic => {
            "Report one service.name from every replica and a service.instance.id of each replica's own: take both \
             from OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES as the platform sets them, or make the id at start \
             (the pod name, a UUID); never a constant, never the host name as the service name."
        }
    }
}

fn trace_context_dropped(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Add AddAspNetCoreInstrumentation() to the tracer provider and keep the default propagator (W3C trace \
             context): it makes the request's span a child of the incoming traceparent. A middleware that starts an \
             Activity of its own must take the parent from the request."
        }
        Preset::Django | Preset::Flask | Preset::Pyramid => {
            "Instrument the app with its opentelemetry-instrumentation package (DjangoInstrumentor, FlaskInstrumentor, \
             the WSGI OpenTelemetryMiddleware), which extracts the incoming traceparent; code that starts spans itself \
             must pass context=extract(request.headers). Keep OTEL_PROPAGATORS at tracecontext."
        }
        Preset::Rails => {
            "Use OpenTelemetry::Instrumentation::Rack (c.use_all in OpenTelemetry::SDK.configure): it extracts the \
             incoming traceparent; spans started by hand must take their parent from \
             OpenTelemetry.propagation.extract(request.env)."
        }
        Preset::Spring => {
            "Run the OpenTelemetry Java agent or the Spring Boot starter, whose server instrumentation continues the \
             incoming traceparent; with Micrometer Tracing, set management.tracing.propagation.type=w3c."
        }
        Preset::Express => {
            "Register @opentelemetry/instrumentation-http (and -express) before the app is required, with the \
             W3CTraceContextPropagator (NodeSDK's default), so each request's span continues the incoming traceparent."
        }
        Preset::Generic => {
            "Continue the caller's trace: extract the W3C traceparent header of each incoming request (the \
             framework's OpenTelemetry instrumentation does) and make the request's span its child, instead of \
             starting a new trace."
        }
    }
}

fn telemetry_not_exported(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Call AddOtlpExporter() without a hard-coded Endpoint so it reads OTEL_EXPORTER_OTLP_ENDPOINT and \
             OTEL_EXPORTER_OTLP_PROTOCOL, and keep the tracer provider alive for the app's lifetime."
        }
        Preset::Django | Preset::Flask | Preset::Pyramid => {
            "Create OTLPSpanExporter() without an endpoint argument (it reads OTEL_EXPORTER_OTLP_ENDPOINT), and with \
             a pre-fork server (gunicorn, uWSGI) set the TracerProvider up in each worker after the fork (post_fork), \
             since the batch processor's thread does not survive it."
        }
        Preset::Rails => {
            "Let the OTLP exporter read OTEL_EXPORTER_OTLP_ENDPOINT (no endpoint: in code), and with puma's cluster \
             mode configure the SDK in on_worker_boot, since the batch processor's thread does not survive the fork."
        }
        Preset::Spring => {
            "Let the agent or starter read OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_PROTOCOL; do not fix \
             otel.exporter.otlp.endpoint in application.properties."
        }
        Preset::Express => {
            "Create OTLPTraceExporter() without a url (it reads OTEL_EXPORTER_OTLP_ENDPOINT), start the NodeSDK \
             before the app, and with cluster mode start it in every worker."
        }
        Preset::Generic => {
            "Export to the endpoint the platform gives (OTEL_EXPORTER_OTLP_ENDPOINT, over OTEL_EXPORTER_OTLP_PROTOCOL), \
             not to one fixed in code, and set the SDK up in every process that serves requests (after a pre-fork \
             server's fork)."
        }
    }
}

fn state_per_replica(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Find what the failing step reads from static fields, singleton services, IMemoryCache or files under the \
             content root (uploads, a SQLite file), and move it to the database, IDistributedCache or shared blob \
             storage."
        }
        Preset::Django => {
            "Find what the failing view reads from module-level globals, LocMemCache, MEDIA_ROOT on the container's \
             disk or a per-replica SQLite file, and move it to the shared database, Redis or object storage \
             (django-storages)."
        }
        Preset::Flask => {
            "Find what the failing route reads from module-level globals, app.config changed at run time, SimpleCache \
             or files under the instance folder (uploads, SQLite), and move it to the shared database, Redis or object \
             storage."
        }
        Preset::Rails => {
            "Find what the failing action reads from class-level variables, Rails.cache on :memory_store or files \
             under storage/ or tmp/ (Active Storage's Disk service), and move it to the database, Redis or a shared \
             Active Storage service such as S3."
        }
        Preset::Pyramid => {
            "Find what the failing view reads from module globals, registry attributes set at run time, \
             dogpile.cache.memory regions or files on local disk (uploads, a SQLite sqlalchemy.url), and move it to \
             the shared database, Redis or object storage."
        }
        Preset::Spring => {
            "Find what the failing step reads from fields of singleton beans, in-memory caches or InMemory* services, \
             or files under the working directory, and move it to the database, Redis or object storage."
        }
        Preset::Express => {
            "Find what the failing route reads from module-level objects, MemoryStore sessions or files written to the \
             container's disk (multer's diskStorage), and move it to the database, Redis or object storage \
             (multer-s3)."
        }
        Preset::Generic => {
            "Find what the failing step reads that lives in process memory (globals, singletons, in-process caches) or \
             on the replica's local disk (uploads, SQLite, temp files), and move it to the shared database, cache or \
             object storage."
        }
    }
}

fn scheduled_job_per_replica(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Run the schedule in one place: Quartz.NET with a clustered JDBC/ADO job store, Hangfire's RecurringJob with \
             shared storage, or a lock per occurrence in the shared store (a Redis SET NX PX, DistributedLock), instead \
             of a PeriodicTimer in a BackgroundService that every replica runs; or move it to a Kubernetes CronJob."
        }
        Preset::Django | Preset::Flask | Preset::Pyramid => {
            "Run the schedule once for the deployment: celery beat (django-celery-beat) as a single process beside the \
             workers, APScheduler with a lock in Redis per occurrence, or a Kubernetes CronJob, instead of a scheduler \
             thread started in every replica (and in every gunicorn worker)."
        }
        Preset::Rails => {
            "Declare the job as a recurring task of a real queue (solid_queue's recurring.yml, sidekiq-cron or \
             good_job's cron), which enqueues each occurrence once, instead of rufus-scheduler or a thread in an \
             initializer that every puma process runs; or use a Kubernetes CronJob."
        }
        Preset::Spring => {
            "Guard @Scheduled methods with ShedLock (@SchedulerLock on a JDBC or Redis lock provider), or use Quartz with \
             a clustered JDBC job store, so one instance runs each occurrence; or move the job to a Kubernetes CronJob."
        }
        Preset::Express => {
            "Give each occurrence a lock in the shared store before it runs (SET key NX PX, or BullMQ's repeatable jobs, \
             which enqueue each occurrence once), instead of node-cron or setInterval in every replica and every \
             cluster worker; or use a Kubernetes CronJob."
        }
        Preset::Generic => {
            "Make one runner own each occurrence: a lease or lock in the shared store taken before the job runs, a \
             scheduler with clustered storage, or a platform cron job (a Kubernetes CronJob) instead of a timer in \
             every replica."
        }
    }
}

fn in_process_queue(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Put accepted work in a durable queue (a database table, Azure Service Bus, RabbitMQ, Hangfire with shared \
             storage) instead of a Channel<T> read by a BackgroundService, and honour the stopping token: finish the \
             item in hand within HostOptions.ShutdownTimeout and leave the rest queued for another replica."
        }
        Preset::Django | Preset::Flask | Preset::Pyramid => {
            "Enqueue accepted work in a broker (Celery or RQ with Redis, or a database table) instead of a thread or \
             ThreadPoolExecutor in the web process, and let workers acknowledge an item only once it is done \
             (Celery's acks_late), so a stopped worker's item is taken again."
        }
        Preset::Rails => {
            "Use a durable Active Job adapter (solid_queue, sidekiq, good_job) instead of :async or :inline, whose jobs \
             live in the puma process and end with it; let the queue's workers finish or hand back their jobs on TERM."
        }
        Preset::Spring => {
            "Hand accepted work to a durable queue (a JMS or RabbitMQ listener, Spring Batch, or a table polled with \
             claiming) instead of @Async or an in-memory executor, and on shutdown let the executor finish in-hand \
             work within spring.lifecycle.timeout-per-shutdown-phase."
        }
        Preset::Express => {
            "Put accepted work in a durable queue (BullMQ or bee-queue on Redis, or a table) instead of an in-memory \
             array or setImmediate, and on SIGTERM stop taking new jobs, finish the current one (worker.close()) and \
             leave the rest queued."
        }
        Preset::Generic => {
            "Keep accepted work in a durable queue outside the process, acknowledge an item only once it is done, and \
             on SIGTERM finish or hand back the item in hand within the grace period, leaving the rest for another \
             replica."
        }
    }
}

fn broadcast_per_process(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Give SignalR a backplane: AddStackExchangeRedis(...) on the SignalR builder (or Azure SignalR Service), so a \
             message sent through any replica reaches the clients connected to every other; keep sticky sessions while \
             clients may fall back to long polling."
        }
        Preset::Django | Preset::Flask | Preset::Pyramid => {
            "Fan messages out through a shared broker: Django Channels with channels_redis (RedisChannelLayer, not \
             InMemoryChannelLayer), Flask-SocketIO with message_queue='redis://...', or a Redis pub/sub hop every \
             replica subscribes to and relays to its own connections."
        }
        Preset::Rails => {
            "Set Action Cable's adapter to redis (or solid_cable) in config/cable.yml for every environment with more \
             than one process; the async adapter broadcasts within one process only."
        }
        Preset::Spring => {
            "Relay STOMP through a full broker (enableStompBrokerRelay to RabbitMQ or ActiveMQ) instead of the simple \
             in-memory broker, or publish through Redis pub/sub that every replica relays to its sessions."
        }
        Preset::Express => {
            "Give Socket.IO the Redis adapter (@socket.io/redis-adapter) or another adapter every replica shares, and \
             sticky sessions or transports: ['websocket'] on the client; for plain ws or SSE, publish through Redis \
             pub/sub and relay to each replica's own connections."
        }
        Preset::Generic => {
            "Publish through something every replica subscribes to (Redis pub/sub, NATS, a managed real-time service) \
             and let each replica relay to its own connections, instead of a list of connections in one process."
        }
    }
}

fn job_abandoned(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Honour the stopping token in the hosted service that runs the job: finish the run in hand within \
             HostOptions.ShutdownTimeout (raised to cover it), or checkpoint it and release its lock so another \
             replica resumes it; Hangfire and clustered Quartz.NET run again a job whose server stopped."
        }
        Preset::Django | Preset::Flask | Preset::Pyramid => {
            "Run long scheduled work in a worker that finishes or requeues it on SIGTERM (Celery with acks_late, RQ, \
             django-q) rather than in a thread of the web process, make it resumable from a checkpoint, and release \
             its lock when it is cut."
        }
        Preset::Rails => {
            "Run the job in solid_queue or Sidekiq, whose workers finish or push back their jobs on TERM within the \
             shutdown timeout, and make long jobs resumable (job-iteration's checkpoints)."
        }
        Preset::Spring => {
            "Let the scheduler finish the run in hand at shutdown (setWaitForTasksToCompleteOnShutdown with \
             setAwaitTerminationSeconds within the grace period), or run it in clustered Quartz with requestsRecovery, \
             which runs again a job whose node stopped."
        }
        Preset::Express => {
            "On SIGTERM stop scheduling and await the run in hand before exiting, within the grace period, or run it \
             as a BullMQ job, whose stalled-job check hands a cut job to another worker."
        }
        Preset::Generic => {
            "Honour SIGTERM in the job: finish the run in hand within the grace period (raised to cover it), or \
             checkpoint it and release its lock or lease so another replica resumes it; a job runner with durable \
             state runs again a job whose worker stopped."
        }
    }
}

fn unclaimed_outbox(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Claim each outbox row before sending it (UPDATE ... SET claimed_by = @me WHERE id = @id AND claimed_by IS \
             NULL, or SELECT ... FOR UPDATE SKIP LOCKED in a transaction), or let one relay own the outbox (MassTransit's \
             or Wolverine's transactional outbox), and send with an idempotency key the receiver honours."
        }
        Preset::Django | Preset::Flask | Preset::Pyramid => {
            "Claim rows before sending them: select_for_update(skip_locked=True) in a transaction (SQLAlchemy's \
             with_for_update(skip_locked=True)), or an atomic claim in Redis, instead of every replica reading the \
             unsent rows and marking them afterwards; send with an idempotency key."
        }
        Preset::Rails => {
            "Claim rows before sending them (lock(\"FOR UPDATE SKIP LOCKED\") in a transaction), or move the work to a \
             queue whose jobs run once (solid_queue, sidekiq), instead of every replica scanning the outbox and \
             marking rows after sending; send with an idempotency key."
        }
        Preset::Spring => {
            "Claim rows before sending them (SELECT ... FOR UPDATE SKIP LOCKED, or a ShedLock around the poller so one \
             instance relays), instead of every instance polling the same unsent rows; send with an idempotency key."
        }
        Preset::Express => {
            "Claim each row or item atomically before sending it (UPDATE ... RETURNING with SKIP LOCKED, or a Redis \
             LMOVE or HDEL whose answer says who won), instead of every replica reading the outbox and deleting rows \
             after sending; send with an idempotency key."
        }
        Preset::Generic => {
            "Claim each item before sending it (FOR UPDATE SKIP LOCKED, or an atomic move or delete in the shared store \
             whose answer names one winner), or let one relay own the outbox; send with an idempotency key the \
             receiver honours."
        }
    }
}

fn transport_needs_affinity(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Route each SignalR connection to one replica: sticky sessions at the load balancer (ARR affinity, a session \
             cookie, or ip-hash), as long as clients may negotiate long polling or server-sent events; or skip negotiation \
             and use WebSockets only (SkipNegotiation with HttpTransportType.WebSockets), or let Azure SignalR Service hold \
             the connections."
        }
        Preset::Django | Preset::Flask | Preset::Pyramid => {
            "Route a client's polling requests to one replica: sticky sessions at the load balancer (a cookie or ip-hash), \
             as Flask-SocketIO and python-socketio require with several workers; or let clients use the WebSocket \
             transport only (transports=['websocket']), whose one connection stays where it was opened."
        }
        Preset::Rails => {
            "Route a client's polling requests to one replica (sticky sessions at the load balancer), or connect over \
             WebSockets only, as Action Cable does, whose one connection stays on the replica that accepted it."
        }
        Preset::Spring => {
            "Route each SockJS session to one replica (sticky sessions by the session id in the URL, or a cookie), or \
             disable the SockJS fallbacks and use plain WebSockets, whose connection stays where it was opened."
        }
        Preset::Express => {
            "Socket.IO's long polling needs sticky sessions (a cookie or ip-hash at the load balancer, or \
             @socket.io/sticky with the cluster module); or set transports: ['websocket'] on the client so no request \
             follows the handshake on another replica."
        }
        Preset::Generic => {
            "Route every request of one transport session to the replica that opened it (sticky sessions by cookie or \
             ip-hash at the load balancer), or use a transport that holds one connection (WebSockets only); a session \
             table in a shared store also lifts the requirement."
        }
    }
}

fn relay_not_resumed(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Let the SignalR Redis backplane reconnect (AbortOnConnectFail = false on its ConfigurationOptions, so \
             StackExchange.Redis keeps retrying and restores its subscriptions), and fail readiness while it is \
             disconnected."
        }
        Preset::Django | Preset::Flask | Preset::Pyramid => {
            "Subscribe again when the pub/sub connection is lost: redis-py's PubSub does not restore subscriptions by \
             itself, so loop on ConnectionError and call subscribe again (or use channels_redis, which does); fail \
             readiness until the relay is back."
        }
        Preset::Rails => {
            "Use Action Cable's redis adapter as shipped, which reconnects its listener; a hand-written subscriber must \
             rescue the lost connection and subscribe again."
        }
        Preset::Spring => {
            "Let the broker relay reconnect (its system session retries by default; keep it) or, for Redis pub/sub, a \
             RedisMessageListenerContainer, which subscribes again after a lost connection."
        }
        Preset::Express => {
            "Subscribe with a client that restores its subscriptions after reconnecting (node-redis v4+ and ioredis \
             do, as @socket.io/redis-adapter relies on), and do not give up on the first lost connection."
        }
        Preset::Generic => {
            "Resume the relay after any lost connection to the channel: reconnect with backoff and subscribe again, and \
             fail readiness while the replica relays nothing."
        }
    }
}

fn limit_per_process(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "ASP.NET Core's rate limiter counts per instance: enforce the limit at the gateway in front of every \
             replica, or partition it over a distributed store (a Redis-backed limiter such as RedisRateLimiting); keep \
             Identity's lockout counts in the database, where they are already shared."
        }
        Preset::Django | Preset::Pyramid => {
            "Count in a shared store: django-ratelimit uses the cache named by RATELIMIT_USE_CACHE, so point it at \
             django-redis rather than LocMemCache; limits (and Flask-Limiter or slowapi built on it) take a \
             redis:// storage_uri."
        }
        Preset::Flask => {
            "Give Flask-Limiter a shared storage_uri (RATELIMIT_STORAGE_URI = \"redis://...\") instead of the default \
             memory://, which counts per worker and starts from zero at every restart."
        }
        Preset::Rails => {
            "Point Rack::Attack.cache.store at a shared store (ActiveSupport::Cache::RedisCacheStore), not a MemoryStore \
             or the memory cache store; Devise's lockable already keeps its failed attempts in the database."
        }
        Preset::Spring => {
            "Keep the buckets in a shared store (Bucket4j with its Redis or JCache proxy manager), or limit at the \
             gateway (Spring Cloud Gateway's RedisRateLimiter), not in a ConcurrentHashMap of each instance."
        }
        Preset::Express => {
            "Give express-rate-limit a shared store (rate-limit-redis) instead of its default MemoryStore, which \
             counts per process and forgets at every restart."
        }
        Preset::Generic => {
            "Keep the counts where every replica reads and writes them (an atomic INCR with EXPIRE in Redis, a \
             database row), or enforce the limit once at the gateway; a limit in process memory is multiplied by the \
             replica count and cleared by every deploy."
        }
    }
}

fn limit_keyed_on_proxy(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Partition the limiter by HttpContext.Connection.RemoteIpAddress only after UseForwardedHeaders with the \
             balancer in KnownProxies or KnownNetworks, so that it is the client's address, not the proxy's."
        }
        Preset::Django | Preset::Pyramid => {
            "Key the limit on the client address the trusted proxy forwards (django-ratelimit's key='ip' reads \
             REMOTE_ADDR, so set it from X-Forwarded-For in a middleware that trusts only the proxy), not on the \
             connection's peer."
        }
        Preset::Flask => {
            "Wrap the app in ProxyFix(x_for=1) so that get_remote_address returns the client's address, or give the \
             limiter a key_func that reads it from the trusted proxy's X-Forwarded-For."
        }
        Preset::Rails => {
            "Throttle by req.ip, which Rack derives from X-Forwarded-For when the peer is a trusted proxy, or by \
             ActionDispatch's remote_ip, not by env['REMOTE_ADDR'], which is the proxy's address."
        }
        Preset::Spring => {
            "Resolve the client address before the limiter (server.forward-headers-strategy=native or a \
             ForwardedHeaderFilter with the proxy trusted) and key the buckets on it, not on the socket's peer."
        }
        Preset::Express => {
            "Set app.set('trust proxy', ...) to the balancer's address so req.ip is the client's, and key the limiter \
             on req.ip (express-rate-limit's default keyGenerator), not on req.socket.remoteAddress."
        }
        Preset::Generic => {
            "Key the limit on the client address the trusted proxy forwards (X-Forwarded-For, believed only from \
             the proxy), or on the account, not on the connection's peer, which behind a balancer is the balancer for \
             every client."
        }
    }
}

fn limit_key_forgeable(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Believe X-Forwarded-For only from the balancer: list it in ForwardedHeadersOptions.KnownProxies and \
             KnownNetworks, and key the limiter on RemoteIpAddress after UseForwardedHeaders, not on the raw header."
        }
        Preset::Django | Preset::Pyramid => {
            "Take the client address from X-Forwarded-For only when the peer is the proxy, and the last address the \
             proxy added, not the first one in the header, which the client wrote."
        }
        Preset::Flask => {
            "Use ProxyFix(x_for=1), which takes the address the one proxy added, instead of a key_func that reads the \
             first address of X-Forwarded-For, which the client wrote."
        }
        Preset::Rails => {
            "Trust only the balancer (config.action_dispatch.trusted_proxies) and throttle by req.ip or remote_ip, \
             never by the raw X-Forwarded-For header."
        }
        Preset::Spring => {
            "Let the server resolve forwarded headers from trusted proxies only (server.tomcat.remoteip.internal-proxies) \
             and key the limiter on the resolved address, never on the X-Forwarded-For header itself."
        }
        Preset::Express => {
            "Set trust proxy to the balancer's address or hop count, not true, so req.ip is the address the balancer \
             saw; never key the limiter on req.headers['x-forwarded-for']."
        }
        Preset::Generic => {
            "Believe X-Forwarded-For only from the known proxy and take the address it added, never the first one a \
             client may write; otherwise every forged address is a fresh count."
        }
    }
}

fn uploads_on_local_disk(preset: Preset) -> &'static str {
    match preset {
        Preset::Aspnetcore => {
            "Store uploads in object storage (Azure Blob Storage, S3) through IFormFile streams, or on a volume every \
             replica mounts (a ReadWriteMany PersistentVolumeClaim), not under the content root of the instance."
        }
        Preset::Django => {
            "Set STORAGES[\"default\"] to django-storages (S3Boto3Storage or another object store), or MEDIA_ROOT to \
             a volume every replica mounts; the default FileSystemStorage writes to the replica's own disk."
        }
        Preset::Flask | Preset::Pyramid => {
            "Write uploads to object storage (boto3 to S3 or a compatible store) or to a volume every replica mounts \
             (ReadWriteMany), not to a directory beside the app."
        }
        Preset::Rails => {
            "Configure Active Storage with an S3-compatible service (config.active_storage.service = :amazon or a \
             MinIO endpoint), or a Disk service root on a volume every replica mounts; :local is each replica's disk."
        }
        Preset::Spring => {
            "Store MultipartFile contents in object storage (Spring Cloud AWS's S3Template) or on a shared volume, not \
             under the instance's working directory or java.io.tmpdir."
        }
        Preset::Express => {
            "Give multer a storage engine for object storage (multer-s3) or a destination on a volume every replica \
             mounts, instead of diskStorage on the replica's own filesystem."
        }
        Preset::Generic => {
            "Keep uploaded files in object storage (S3 or a compatible store) or on a volume every replica mounts \
             (ReadWriteMany); a file on one replica's disk is missing on the others and gone with the container."
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_framework_has_a_short_remedy_of_its_own_for_every_cause() {
        for cause in Cause::ALL {
            let generic = remedy(cause, Preset::Generic);
            for preset in Preset::ALL {
                let text = remedy(cause, preset);
                let chars = text.chars().count();
                assert!(chars > 0 && chars <= 400, "{cause} {preset:?}: {chars} chars");
                // A line continuation that lost its space, or gained one, shows here.
                assert!(text.trim() == text && !text.contains("  "), "{cause} {preset:?}: {text:?}");
                if preset != Preset::Generic {
                    assert_ne!(text, generic, "{cause} {preset:?} repeats the generic remedy");
                }
            }
        }
    }
}
