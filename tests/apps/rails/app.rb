# A small Rails app (not replicheck's demo) with Rails' own machinery: sessions in the
# encrypted cookie store keyed by secret_key_base, protect_from_forgery with
# authenticity_token, and Rails.cache.
#
# Misconfigured (no SECRET_KEY_BASE, no CACHE_DIR), each process makes its own
# secret_key_base and caches in memory. Configured, the secret comes from the environment
# and the cache is a file store in a directory all replicas share.
#
#   ruby app.rb PORT
require "securerandom"
require "logger"
require "rails"
require "action_controller/railtie"
require "rack/handler/webrick"

class NotesApp < Rails::Application
  config.load_defaults 6.1
  config.root = __dir__
  config.eager_load = false
  config.consider_all_requests_local = false
  config.logger = Logger.new($stdout)
  config.log_level = :warn
  config.secret_key_base = ENV["SECRET_KEY_BASE"] || SecureRandom.hex(64)
  config.session_store :cookie_store, key: "_notes_session"
  config.cache_store = ENV["CACHE_DIR"] ? [:file_store, ENV["CACHE_DIR"]] : :memory_store
  config.hosts.clear
  # Forgery protection is declared in the controller below, where it can be read.
  config.action_controller.default_protect_from_forgery = false

  routes.append do
    get "/up" => "pages#up"
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

  def up
    render plain: "up"
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
$stdout.sync = true
puts "notes (rails #{Rails.version}) on 127.0.0.1:#{port}"
Rack::Handler::WEBrick.run(NotesApp, Host: "127.0.0.1", Port: port, AccessLog: [], Logger: WEBrick::Log.new($stderr, WEBrick::Log::WARN))
