# The accounts that sign in, with bob's.
class CreateAccounts < ActiveRecord::Migration[6.1]
  def up
    create_table :accounts, id: false do |t|
      t.string :email, primary_key: true
      t.string :password_sha256, null: false
    end
    execute "INSERT INTO accounts (email, password_sha256) VALUES ('bob@example.com', '#{Digest::SHA256.hexdigest('hunter22')}')"
    # A data migration takes a while on a real table; this one's backfill two seconds.
    execute "SELECT pg_sleep(2)"
  end

  def down
    drop_table :accounts
  end
end
