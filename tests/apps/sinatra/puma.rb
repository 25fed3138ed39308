# puma in cluster mode, as Sinatra apps are usually deployed: a master that pre-forks
# workers sharing one listening socket.
#   PORT=8080 puma -C puma.rb
workers Integer(ENV.fetch("WEB_CONCURRENCY", 2))
threads 5, 5
bind "tcp://127.0.0.1:#{ENV.fetch("PORT")}"
environment "production"
rackup File.join(__dir__, "config.ru")

# Load the app in the master, before forking: the workers share what it made at load time
# (Sinatra's default session secret among it). Without this each worker loads the app
# itself, and in the misconfigured mode the two workers of ONE replica would refuse each
# other's cookies.
preload_app!

# At SIGTERM the master closes the listener, the workers stop accepting and finish the
# requests they hold. They get this long for it before being killed.
worker_shutdown_timeout 8

# A durable order queue's worker runs in each puma worker: started after the fork (threads
# do not cross it), and stopped once the worker has finished its requests, the order in
# hand delivered. (The in-process queue has no such hooks: its thread dies with the worker.)
on_worker_boot { |index| NotesApp.settings.orders.start(index) if NotesApp.settings.orders.respond_to?(:start) }
on_worker_shutdown { NotesApp.settings.orders.stop if NotesApp.settings.orders.respond_to?(:stop) }
quiet
