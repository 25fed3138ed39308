# A small Rails app (not replicheck's demo) with Rails' own machinery: sessions in the
# encrypted cookie store keyed by secret_key_base, protect_from_forgery with
# authenticity_token (and its Origin check), Rails.cache, and ActionDispatch::RemoteIp
# for the client's address. Served by WEBrick through Rack's handler. The deployment's
# environment picks the mode:
#
# Misconfigured (broken.toml: no SECRET_KEY_BASE, CACHE_DIR, TRUSTED_PROXY, DRAIN_MS):
# - every process makes its own secret_key_base: sign-in, session and authenticity token
#   are lost on another replica and after a restart;
# - Rails.cache is a memory store: per process, empty after a restart;
# - forwarded headers as Rails leaves them: Rack believes X-Forwarded-Proto/-Host from
#   anyone, and RemoteIp takes the client from X-Forwarded-For whoever sent it (its
#   default trusted proxies, 127.0.0.0/8 and the private ranges, only say which hops to
#   skip), so a stranger who connects straight to a replica is believed;
# - WEBrick's default SIGTERM: Ruby raises SignalException in the main thread, WEBrick's
#   accept loop closes its listener at once, waits for the requests in flight, and the
#   process dies of the signal. Requests the balancer still routes are refused.
#
# Configured (fixed.toml): SECRET_KEY_BASE from the deployment; the cache is a file
# store in a directory all replicas share (CACHE_DIR); config.action_dispatch.
# trusted_proxies is exactly TRUSTED_PROXY, and TrustedProxyHeaders drops X-Forwarded-*
# (and Client-IP) unless the connection comes from it; at SIGTERM readiness answers 503,
# the server keeps serving DRAIN_MS, then closes its listener, finishes the requests in
# flight and exits 0.
#
#   ruby app.rb PORT
require "securerandom"
require "logger"
require "ipaddr"
require "json"
require "rails"
require "action_controller/railtie"
require "rack/handler/webrick"

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
  end
end

class PagesController < ActionController::Base
  protect_from_forgery with: :exception
  # The session and cache endpoints stand for an API: no form, no token.
  skip_forgery_protection only: [:keep_note, :write_cache]
  rescue_from(ActionController::InvalidAuthenticityToken) { render plain: "Invalid authenticity token", status: 422 }

  USERS = { "bob@example.com" => "hunter22" }.freeze

  def index
    page("Notes", %(<p><a href="/users/sign_in">Log in</a></p>))
  end

  def up
    Lifecycle.draining ? render(plain: "draining", status: 503) : render(plain: "up")
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
    if USERS[user] && USERS[user] == params.dig(:user, :password)
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

  private

  def page(title, body)
    render html: "<!doctype html><html><body><h1>#{title}</h1>#{body}</body></html>".html_safe
  end
end

NotesApp.initialize!
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
