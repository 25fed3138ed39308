# Rack entry point (puma.rb loads it once, in the master, before forking the workers).
require_relative "app"

# Configured mode: X-Forwarded-* are believed only from the proxy we deploy behind. This
# sits in front of the Sinatra app, so rack-protection (HttpOrigin compares Origin with
# the base URL that X-Forwarded-Proto/-Host make) sees what the app sees.
use TrustedProxyHeaders, ENV["TRUSTED_PROXY"] if ENV["TRUSTED_PROXY"]
run NotesApp
