# A small Sinatra app (not replicheck's demo) served by puma in cluster mode (puma.rb:
# two pre-forked workers per replica). It uses Sinatra's own machinery: `enable :sessions`
# (Rack::Protection::EncryptedCookie, sealed with settings.session_secret), the
# rack-protection defaults Sinatra installs, and Rack::Protection::AuthenticityToken for
# forms (field `authenticity_token`); the user, the note and the CSRF token all live in
# the session cookie. The deployment's environment picks the mode:
#
# Misconfigured (broken.toml: no SESSION_SECRET, REDIS_URL, TRUSTED_PROXY):
# - Sinatra's default session secret: SecureRandom.hex(64), made when sinatra/base is
#   loaded. puma.rb preloads the app in the master, so both workers of a replica inherit
#   it (without preload_app! every worker draws its own and the app fails on ONE replica),
#   but every replica, and every restart, has its own: sign-in, note and token are lost.
# - The cache is a PStore file on the instance's own disk (LOCAL_CACHE_DIR, the
#   container's filesystem): shared by the workers of a replica, invisible to the others.
#   (A plain Hash would not even survive one replica: each puma worker has its own copy.)
# - X-Forwarded-Proto/-Host are believed from anyone: puma makes rack.url_scheme from
#   X-Forwarded-Proto, and Rack 2.2's Request#scheme and #host read them unconditionally,
#   so a stranger who connects directly is believed to be on https. (#ip is safer: it
#   skips only 127.0.0.1 and private hops of X-Forwarded-For.)
#
# Configured (fixed.toml): `set :session_secret` from SESSION_SECRET (as Sinatra's README
# asks), the cache in Redis (REDIS_URL; readiness answers 503 when Redis does not answer),
# and TrustedProxyHeaders (config.ru) drops X-Forwarded-* unless the connection comes from
# TRUSTED_PROXY, so the real proxy is believed (https, its client) and strangers are not.
#
# Sinatra's rack-protection defaults (HttpOrigin, RemoteToken, SessionHijacking...) react
# by dropping the session: HttpOrigin compares a post's Origin with the base URL that
# X-Forwarded-Proto/-Host make, so an app that believed http behind the TLS proxy would
# silently sign its users out. Both modes believe the real proxy, so browser flows pass.
#
# Both: readiness answers 503 once puma is shutting down. Puma closes its listener at
# SIGTERM and finishes the requests in flight; the deployment (fixed.toml) gives it a
# preStop sleep so that the balancer has stopped routing by then.
#
# Orders: `POST /orders` (form `order`) answers 202 and hands the order to a worker, which
# takes one at a time, prepares its receipt (~300 ms) and POSTs it to SINK_URL/receipts as
# JSON {"order": ...}.
# - Misconfigured (no REDIS_URL): a Queue and a Thread in the puma worker that took the
#   request, as Rails' :async adapter keeps its jobs. At SIGTERM puma finishes the requests
#   and the worker process exits: the orders it held, queued or in hand, die with it.
# - Configured (REDIS_URL): a durable queue in Redis. Every puma worker of every replica
#   claims one order at a time with LMOVE into a list of its own, posts the receipt, then
#   LREMs it; at shutdown (puma's on_worker_shutdown, after the requests) it finishes the
#   order in hand and claims no more, and when it starts it hands its list back to the
#   queue (what it held when it was killed).
require "sinatra/base"
require "json"
require "net/http"
require "pstore"
require "tmpdir"

# Keeps X-Forwarded-* (and the other client-supplied proxy headers Rack or
# rack-protection read) only when the connection comes from the proxy we deploy behind.
class TrustedProxyHeaders
  HEADERS = %w[HTTP_X_FORWARDED_FOR HTTP_X_FORWARDED_PROTO HTTP_X_FORWARDED_HOST
               HTTP_X_FORWARDED_PORT HTTP_X_FORWARDED_SSL HTTP_X_FORWARDED_SCHEME
               HTTP_FORWARDED HTTP_X_REAL_IP HTTP_CLIENT_IP].freeze

  def initialize(app, proxy)
    @app = app
    @proxy = proxy
    # Rack::Request#ip skips every private or 127.0.0.1 hop of X-Forwarded-For as "a
    # proxy"; only ours is one.
    Rack::Request.ip_filter = ->(ip) { ip == proxy }
  end

  def call(env)
    unless env["REMOTE_ADDR"] == @proxy
      HEADERS.each { |name| env.delete(name) }
      # puma has already turned X-Forwarded-Proto into rack.url_scheme: put back what the
      # connection itself is (puma sets HTTPS only on a TLS listener).
      env["rack.url_scheme"] = env["HTTPS"] ? "https" : "http"
    end
    @app.call(env)
  end
end

# The cache every replica should share: Redis. One connection per puma worker (a socket
# must not cross fork), made on first use.
class RedisCache
  def initialize(url)
    require "redis"
    @url = url
    @lock = Mutex.new
  end

  def read(key) = client.get("notes:cache:#{key}")
  def write(key, value) = client.set("notes:cache:#{key}", value)

  def ready?
    client.ping == "PONG"
  rescue Redis::BaseError
    false
  end

  def describe = "redis"

  private

  def client
    @lock.synchronize do
      @client = nil unless @pid == Process.pid
      @pid = Process.pid
      @client ||= Redis.new(url: @url, connect_timeout: 0.5, read_timeout: 1, write_timeout: 1)
    end
  end
end

# The misconfigured cache: a file on this instance's disk (PStore locks it, so the
# workers of one replica share it).
class LocalDiskCache
  def initialize(dir)
    @store = PStore.new(File.join(dir, "notes-cache.pstore"), true)
  end

  def read(key) = @store.transaction(true) { @store[key] }
  def write(key, value) = @store.transaction { @store[key] = value }
  def ready? = true
  def describe = "local file #{@store.path}"
end

# A receipt for an order, posted to the deployment's webhook endpoint.
module Receipts
  def self.deliver(sink, order)
    # Preparing the receipt takes a while.
    sleep 0.3
    uri = URI("#{sink}/receipts")
    Net::HTTP.start(uri.host, uri.port, open_timeout: 2, read_timeout: 5) do |http|
      answer = http.post(uri.path, JSON.generate(order: order), "Content-Type" => "application/json")
      raise "the receipt of #{order} was refused: #{answer.code}" unless answer.is_a?(Net::HTTPSuccess)
    end
  end
end

# The misconfigured queue: in the memory of the puma worker that took the request, with a
# thread of its own started by the first order (a thread does not cross fork).
class InProcessOrders
  def initialize(sink)
    @sink = sink
    @lock = Mutex.new
  end

  def push(order)
    @lock.synchronize do
      unless @pid == Process.pid
        @pid = Process.pid
        @queue = Queue.new
        Thread.new { work }
      end
    end
    @queue << order
  end

  private

  def work
    loop do
      order = @queue.pop
      begin
        Receipts.deliver(@sink, order)
      rescue StandardError => e
        warn "receipt not sent: #{e.message}"
      end
    end
  end
end

# The configured queue: a list in Redis, from which each puma worker claims one order at a
# time into a list of its own, named after the replica and the worker as a StatefulSet
# names its pods, so that the same worker started again finds what it held.
class RedisOrders
  QUEUE = "orders:queue"

  def initialize(url, sink, replica)
    require "redis"
    @url = url
    @sink = sink
    @replica = replica
    @lock = Mutex.new
  end

  def push(order)
    @lock.synchronize do
      @client = nil unless @pid == Process.pid
      @pid = Process.pid
      @client ||= Redis.new(url: @url, connect_timeout: 0.5, read_timeout: 1, write_timeout: 1)
    end
    @client.lpush(QUEUE, order)
  end

  # In a puma worker, after the fork.
  def start(index)
    @claimed = "orders:claimed:#{@replica}:#{index}"
    @stopping = false
    @worker = Thread.new { work }
  end

  # In a puma worker, once it has finished its requests: the order in hand is delivered.
  def stop
    @stopping = true
    @worker&.join(5)
  end

  private

  def work
    redis = Redis.new(url: @url, connect_timeout: 0.5, read_timeout: 1, write_timeout: 1)
    handed_back = false
    until @stopping
      begin
        unless handed_back
          nil while redis.lmove(@claimed, QUEUE, "LEFT", "RIGHT")
          handed_back = true
        end
        # Blocks briefly, so that a stop is noticed between orders.
        order = redis.blmove(QUEUE, @claimed, "RIGHT", "LEFT", timeout: 0.5)
        next unless order

        begin
          Receipts.deliver(@sink, order)
        rescue StandardError
          # Back to the queue, for this worker or another.
          redis.multi { |tx| tx.lrem(@claimed, 1, order); tx.rpush(QUEUE, order) }
          raise
        end
        redis.lrem(@claimed, 1, order)
      rescue StandardError => e
        warn "receipt not sent: #{e.message}"
        sleep 0.2
      end
    end
  end
end

class NotesApp < Sinatra::Base
  USERS = { "bob" => "hunter22" }.freeze

  set :environment, :production
  enable :sessions
  set :session_secret, ENV["SESSION_SECRET"] if ENV["SESSION_SECRET"]
  # Refuses (403) an unsafe request whose authenticity_token does not match the session's.
  # The note, cache and order endpoints stand for an API: no form, no token.
  use Rack::Protection::AuthenticityToken,
      allow_if: ->(env) { %w[/session /orders].include?(env["PATH_INFO"]) || env["PATH_INFO"].start_with?("/cache/") }

  set :cache, (ENV["REDIS_URL"] ? RedisCache.new(ENV["REDIS_URL"]) : LocalDiskCache.new(ENV.fetch("LOCAL_CACHE_DIR") { Dir.mktmpdir("notes-cache") }))

  set :orders, (ENV["REDIS_URL"] ? RedisOrders.new(ENV["REDIS_URL"], ENV.fetch("SINK_URL"), ENV.fetch("REPLICA")) : InProcessOrders.new(ENV.fetch("SINK_URL")))

  error(Redis::BaseError) { status 503; "cache unavailable" } if defined?(Redis)

  helpers do
    def h(text) = Rack::Utils.escape_html(text.to_s)

    def page(title, body)
      "<!doctype html><html><head><title>#{h title}</title></head><body><h1>#{h title}</h1>#{body}</body></html>"
    end

    def token_field
      %(<input type="hidden" name="authenticity_token" value="#{h Rack::Protection::AuthenticityToken.token(session)}">)
    end

    def login_form(message = nil)
      page("Log in", <<~HTML)
        #{message && "<p>#{h message}</p>"}
        <form action="/login" method="post">
          #{token_field}
          <input name="username"> <input type="password" name="password">
          <input type="submit" value="Log in">
        </form>
      HTML
    end

    def shutting_down?
      defined?(Puma::Server) && Puma::Server.current&.shutting_down?
    end
  end

  get "/" do
    page("Notes", %(<p><a href="/login">Log in</a></p>))
  end

  get "/up" do
    content_type :text
    halt 503, "shutting down" if shutting_down?
    halt 503, "cache store not answering" unless settings.cache.ready?
    "up"
  end

  get "/slow" do
    sleep([params["ms"].to_i, 60_000].min / 1000.0)
    "slept #{params["ms"].to_i} ms"
  end

  get "/whoami" do
    content_type :json
    JSON.generate(scheme: request.scheme, client_ip: request.ip)
  end

  get "/login" do
    login_form
  end

  post "/login" do
    user = params["username"].to_s
    return login_form("Invalid username or password.") unless USERS[user] && USERS[user] == params["password"]

    request.session_options[:renew] = true # a new session id for the signed-in user
    session[:user] = user
    redirect to("/account")
  end

  get "/account" do
    redirect to("/login") unless session[:user]
    page("Account", "<p>Signed in as #{h session[:user]}</p>")
  end

  get "/transfer" do
    page("Transfer", <<~HTML)
      <form action="/transfer" method="post">
        #{token_field}
        <input name="amount" value="1"> <input type="submit" value="Send">
      </form>
    HTML
  end

  post "/transfer" do
    page("Transfer", "<p>Transfer accepted: #{h params["amount"]}</p>")
  end

  post "/session" do
    session[:note] = params["note"]
    page("Session", "<p>Kept.</p>")
  end

  get "/session" do
    page("Session", "<p>Note: #{h session[:note]}</p>")
  end

  put "/cache/:key" do
    settings.cache.write(params["key"], request.body.read)
    204
  end

  post "/orders" do
    settings.orders.push(params["order"].to_s)
    status 202
    "order accepted"
  end

  get "/cache/:key" do
    content_type :text
    value = settings.cache.read(params["key"])
    value ? value : halt(404, "not cached")
  end
end
