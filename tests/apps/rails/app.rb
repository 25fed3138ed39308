# A small Rails app (not replicheck's demo) with Rails' own machinery: sessions in the
# encrypted cookie store keyed by secret_key_base, protect_from_forgery with
# authenticity_token (and its Origin check), Rails.cache, and ActionDispatch::RemoteIp
# for the client's address, Rack::Attack for a rate limit and a plain controller for file
# uploads; the accounts that sign in are an Active Record model in PostgreSQL (the `pg`
# driver, DATABASE_URL), made by the migration in db/migrate. Served by WEBrick through
# Rack's handler. `ruby app.rb migrate` runs the migrations and exits (the deployment's
# step); a database error answers 503. The deployment's environment picks the mode:
#
# Misconfigured (broken.toml: no SECRET_KEY_BASE, CACHE_DIR, TRUSTED_PROXY, DRAIN_MS,
# RATE_LIMIT_REDIS, READINESS_CHECKS_DATABASE; MIGRATE_AT_START; UPLOAD_DIR is the replica's
# own directory):
# - every replica runs the migrations as it boots (as a `bin/docker-entrypoint` that runs
#   db:prepare does): replicas started together on an empty database race for Rails'
#   migration lock, and the ones that lose fail to boot (ConcurrentMigrationError);
# - readiness does not ask the database;
# - every process makes its own secret_key_base: sign-in, session and authenticity token
#   are lost on another replica and after a restart;
# - Rails.cache is a memory store: per process, empty after a restart;
# - forwarded headers as Rails leaves them: Rack believes X-Forwarded-Proto/-Host from
#   anyone, and RemoteIp takes the client from X-Forwarded-For whoever sent it (its
#   default trusted proxies, 127.0.0.0/8 and the private ranges, only say which hops to
#   skip), so a stranger who connects straight to a replica is believed;
# - WEBrick's default SIGTERM: Ruby raises SignalException in the main thread, WEBrick's
#   accept loop closes its listener at once, waits for the requests in flight, and the
#   process dies of the signal. Requests the balancer still routes are refused;
# - Rack::Attack throttles POST /password-reset (5 a minute per client) with its counts in
#   an ActiveSupport MemoryStore of the process, keyed on REMOTE_ADDR: since remote_ip
#   believes anyone here, the throttle keys on the one address nobody can forge, which
#   behind the proxy is the proxy's. So the limit is counted per replica, forgotten at a
#   restart, and shared by every client behind the proxy;
# - uploads are written to UPLOAD_DIR, the replica's own disk: another replica has none of
#   them.
#
# Configured (fixed.toml): the migrations run once per deployment before the replicas
# start (the target's seed_command), readiness answers 503 while the database does not
# answer (READINESS_CHECKS_DATABASE); SECRET_KEY_BASE from the deployment; the cache is a file
# store in a directory all replicas share (CACHE_DIR); config.action_dispatch.
# trusted_proxies is exactly TRUSTED_PROXY, and TrustedProxyHeaders drops X-Forwarded-*
# (and Client-IP) unless the connection comes from it; at SIGTERM readiness answers 503,
# the server keeps serving DRAIN_MS, then closes its listener, finishes the requests in
# flight and exits 0; Rack::Attack counts in the run's Redis (a RedisCacheStore on
# RATE_LIMIT_REDIS), keyed on the client's address as RemoteIp derives it from the trusted
# proxy's X-Forwarded-For; uploads go to a directory every replica shares (UPLOAD_DIR).
#
#   ruby app.rb PORT
require "securerandom"
require "fileutils"
require "logger"
require "ipaddr"
require "json"
require "rails"
require "action_controller/railtie"
require "active_record/railtie"
require "digest"
require "pg"
require "rack/handler/webrick"
# After Rails: its railtie appends Rack::Attack to the app's middleware, after RemoteIp.
require "rack/attack"

# Keeps the client-supplied proxy headers Rack and Rails read only when the connection
# comes from the proxy we deploy behind: Rack believes X-Forwarded-Proto from anyone, and
# RemoteIp reads X-Forwarded-For even when the peer is not a trusted proxy.
class TrustedProxyHeaders
  HEADERS = %w[HTTP_X_FORWARDED_FOR HTTP_X_FORWARDED_PROTO HTTP_X_FORWARDED_HOST
               HTTP_X_FORWARDED_PORT HTTP_X_FORWARDED_SSL HTTP_X_FORWARDED_SCHEME
               HTTP_FORWARDED HTTP_CLIENT_IP].freeze

  def initialize(app, proxy)
    @app = app
    @proxy = proxy
  end

  def call(env)
    HEADERS.each { |name| env.delete(name) } unless env["REMOTE_ADDR"] == @proxy
    @app.call(env)
  end
end

# Set by the SIGTERM handler (configured mode): readiness fails while the server drains.
module Lifecycle
  class << self
    attr_accessor :draining
  end
end

class NotesApp < Rails::Application
  config.load_defaults 6.1
  config.root = __dir__
  config.eager_load = false
  config.cache_classes = true
  config.consider_all_requests_local = false
  config.logger = Logger.new($stdout)
  config.log_level = :warn
  config.secret_key_base = ENV["SECRET_KEY_BASE"] || SecureRandom.hex(64)
  config.session_store :cookie_store, key: "_notes_session"
  config.cache_store = ENV["CACHE_DIR"] ? [:file_store, ENV["CACHE_DIR"]] : :memory_store
  config.hosts.clear
  if (proxy = ENV["TRUSTED_PROXY"])
    config.action_dispatch.trusted_proxies = [IPAddr.new(proxy)]
    config.middleware.insert_before 0, TrustedProxyHeaders, proxy
  end
  # The replica's own disk (misconfigured) or a directory every replica shares.
  config.x.upload_dir = ENV["UPLOAD_DIR"]
  # Forgery protection is declared in the controller below, where it can be read.
  config.action_controller.default_protect_from_forgery = false

  routes.append do
    get "/" => "pages#index"
    get "/up" => "pages#up"
    get "/slow" => "pages#slow"
    get "/whoami" => "pages#whoami"
    get "/users/sign_in" => "pages#sign_in_form"
    post "/users/sign_in" => "pages#sign_in"
    get "/account" => "pages#account"
    get "/transfer" => "pages#transfer_form"
    post "/transfer" => "pages#transfer"
    get "/session" => "pages#show_note"
    post "/session" => "pages#keep_note"
    get "/cache/:key" => "pages#read_cache"
    put "/cache/:key" => "pages#write_cache"
    post "/password-reset" => "pages#password_reset"
    post "/uploads" => "pages#upload"
    get "/uploads/:name" => "pages#uploaded", constraints: { name: %r{[^/]+} }, format: false
  end
end

# The rate limit: POST /password-reset, 5 tries per client a minute (Rack::Attack's windows
# are the clock's minutes), then 429.
if (redis = ENV["RATE_LIMIT_REDIS"])
  # Configured: the counts in Redis, which every replica shares and a restart keeps.
  Rack::Attack.cache.store = ActiveSupport::Cache::RedisCacheStore.new(
    url: redis, connect_timeout: 1, read_timeout: 1, write_timeout: 1, reconnect_attempts: 1
  )
  # The client as RemoteIp derives it: X-Forwarded-For when the peer is the trusted proxy.
  Rack::Attack.throttle("password-resets/ip", limit: 5, period: 60) do |req|
    req.env["action_dispatch.remote_ip"].to_s if req.post? && req.path == "/password-reset"
  end
else
  # Misconfigured: the counts in this process, keyed on the connection's peer.
  Rack::Attack.cache.store = ActiveSupport::Cache::MemoryStore.new
  Rack::Attack.throttle("password-resets/ip", limit: 5, period: 60) do |req|
    req.get_header("REMOTE_ADDR") if req.post? && req.path == "/password-reset"
  end
end

# An account that signs in; its table comes from db/migrate.
class Account < ActiveRecord::Base
  def self.signs_in?(email, password)
    account = find_by(email: email)
    account && ActiveSupport::SecurityUtils.secure_compare(account.password_sha256, Digest::SHA256.hexdigest(password.to_s))
  end
end

def migrate!
  migrations = ActiveRecord::MigrationContext.new(File.join(__dir__, "db/migrate"), ActiveRecord::SchemaMigration)
  migrations.migrate
end

class PagesController < ActionController::Base
  protect_from_forgery with: :exception
  # The session and cache endpoints stand for an API: no form, no token.
  # So do the password reset and the uploads.
  skip_forgery_protection only: [:keep_note, :write_cache, :password_reset, :upload]
  rescue_from(ActionController::InvalidAuthenticityToken) { render plain: "Invalid authenticity token", status: 422 }
  rescue_from(ActiveRecord::ActiveRecordError, PG::Error) { |e| render plain: "database unavailable: #{e.class}", status: 503 }

  def index
    page("Notes", %(<p><a href="/users/sign_in">Log in</a></p>))
  end

  def up
    return render(plain: "draining", status: 503) if Lifecycle.draining

    ActiveRecord::Base.connection.execute("SELECT 1") if ENV["READINESS_CHECKS_DATABASE"]
    render plain: "up"
  end

  def slow
    ms = params[:ms].to_i.clamp(0, 60_000)
    sleep(ms / 1000.0)
    render plain: "slept #{ms} ms"
  end

  def whoami
    render json: { scheme: request.scheme, client_ip: request.remote_ip }
  end

  def sign_in_form
    page("Log in", <<~HTML)
      <form action="/users/sign_in" method="post">
        <input type="hidden" name="authenticity_token" value="#{form_authenticity_token}">
        <input type="email" name="user[email]"> <input type="password" name="user[password]">
        <input type="submit" name="commit" value="Log in">
      </form>
    HTML
  end

  def sign_in
    user = params.dig(:user, :email).to_s
    if Account.signs_in?(user, params.dig(:user, :password))
      reset_session
      session[:user] = user
      redirect_to "/account"
    else
      page("Log in", "<p>Invalid email or password.</p>")
    end
  end

  def account
    return redirect_to("/users/sign_in") unless session[:user]
    page("Account", "<p>Signed in as #{ERB::Util.h(session[:user])}</p>")
  end

  def transfer_form
    page("Transfer", <<~HTML)
      <form action="/transfer" method="post">
        <input type="hidden" name="authenticity_token" value="#{form_authenticity_token}">
        <input name="amount" value="1"> <input type="submit" value="Send">
      </form>
    HTML
  end

  def transfer
    page("Transfer", "<p>Transfer accepted: #{ERB::Util.h(params[:amount])}</p>")
  end

  def keep_note
    session[:note] = params[:note]
    page("Session", "<p>Kept.</p>")
  end

  def show_note
    page("Session", "<p>Note: #{ERB::Util.h(session[:note])}</p>")
  end

  def write_cache
    Rails.cache.write("notes/#{params[:key]}", request.raw_post)
    head :no_content
  end

  def read_cache
    value = Rails.cache.read("notes/#{params[:key]}")
    value ? render(plain: value) : render(plain: "not cached", status: 404)
  end

  # Rack::Attack answers 429 before this once the client is over its limit.
  def password_reset
    render plain: "If #{params[:email]} has an account, a reset link is on its way.", status: :accepted
  end

  def upload
    file = params[:file]
    return render(plain: "a file is required (field file)", status: 400) unless file.respond_to?(:original_filename)

    name = upload_name(file.original_filename)
    return render(plain: "bad file name", status: 400) unless name

    dir = Rails.configuration.x.upload_dir
    FileUtils.mkdir_p(dir)
    # Written beside, then renamed: a reader never sees half a file.
    partial = File.join(dir, ".#{name}.#{SecureRandom.hex(4)}")
    FileUtils.cp(file.tempfile.path, partial)
    File.chmod(0o644, partial)
    File.rename(partial, File.join(dir, name))
    render plain: "uploaded #{name}", status: :created
  end

  def uploaded
    name = upload_name(params[:name])
    path = name && File.join(Rails.configuration.x.upload_dir, name)
    return render(plain: "no such upload", status: 404) unless path && File.file?(path)

    send_file path, disposition: "inline"
  end

  private

  # The file name alone, no directories, no hidden files.
  def upload_name(given)
    name = File.basename(given.to_s)
    name if name.match?(/\A[\w][\w.-]*\z/)
  end

  def page(title, body)
    render html: "<!doctype html><html><body><h1>#{title}</h1>#{body}</body></html>".html_safe
  end
end

NotesApp.initialize!
if ARGV.first == "migrate"
  migrate!
  puts "migrated"
  exit
end
if ENV["MIGRATE_AT_START"]
  puts "migrating as the replica boots"
  migrate!
end
port = Integer(ARGV.fetch(0))
drain_ms = ENV["DRAIN_MS"]&.to_i
$stdout.sync = true
puts "notes (rails #{Rails.version}) on 127.0.0.1:#{port}"
Rack::Handler::WEBrick.run(NotesApp, Host: "127.0.0.1", Port: port, AccessLog: [],
                                     Logger: WEBrick::Log.new($stderr, WEBrick::Log::WARN)) do |server|
  next unless drain_ms

  # Configured mode. A trap handler may not take locks, so it only flags and hands over.
  trap("TERM") do
    next if Lifecycle.draining

    Lifecycle.draining = true
    Thread.new do
      puts "SIGTERM: readiness fails, serving #{drain_ms} ms more"
      sleep(drain_ms / 1000.0)
      puts "closing the listener; finishing the requests in flight"
      # Stops the accept loop; WEBrick then closes the listener and joins the request
      # threads (a keep-alive connection ends after its current request).
      server.shutdown
    end
  end
end
puts "stopped"
