#!/usr/bin/env bash
# A throwaway Postfix instance on loopback for chaff's end-to-end milter tests.
#
#   scripts/postfix-testenv.sh start DIR SMTP_PORT MILTER    # MILTER: inet:127.0.0.1:PORT
#   scripts/postfix-testenv.sh relay DIR SMTP_PORT NEXT_PORT  # a sending instance
#   scripts/postfix-testenv.sh user  DIR NAME PASSWORD        # SMTP AUTH account (sasldb)
#   scripts/postfix-testenv.sh stop  DIR
#
# `start` applies each line of $PF_MAIN_CF_EXTRA (`name = value`) over its main.cf
# with `postconf -e`, e.g. a smaller message_size_limit or a list of mailboxes.
# `relay` is a sending instance for bounce tests: it accepts mail from loopback
# on SMTP_PORT and relays everything to 127.0.0.1:NEXT_PORT (another instance),
# except mail for example.com, which it delivers to DIR/mail/inbox/: that is
# where the delivery status notifications it writes for refused mail arrive.
#
# Everything lives under DIR (config, queue, logs, SASL database, delivered mail), so
# the system Postfix is untouched. The SMTP server listens on 127.0.0.1:SMTP_PORT only;
# mail for example.org is delivered to the Maildir DIR/mail/inbox/ (to inspect headers),
# anything else is discarded: nothing is ever relayed. SMTP AUTH (PLAIN, LOGIN) uses
# Cyrus SASL with DIR/sasldb2, realm test.localdomain. Needs root and the Debian
# packages postfix, sasl2-bin, libsasl2-modules (swaks to send).
set -euo pipefail

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,23p' "$0"; exit 2; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
realm=test.localdomain

# master.cf: the SMTP server on 127.0.0.1:$1 and the services a test needs.
write_master_cf() {
  local smtp_port=$1
  cat >"$dir/etc/master.cf" <<EOF
127.0.0.1:$smtp_port inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
}

# Checks the configuration, starts Postfix and waits for 127.0.0.1:$1.
start_postfix() {
  local smtp_port=$1
  # Without a terminal, `postfix` reports early errors only to syslog, which a
  # container may lack: on failure, say where to look.
  if ! postfix -c "$dir/etc" check; then
    echo "postfix check failed; run: script -qc 'postfix -c $dir/etc check' /dev/null" >&2
    exit 1
  fi
  postfix -c "$dir/etc" start
  # Wait for the SMTP port.
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$smtp_port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "postfix did not open 127.0.0.1:$smtp_port; log:" >&2
  cat "$dir/log/maillog" >&2 || true
  exit 1
}

case "$cmd" in
start)
  smtp_port=${3:?SMTP port}
  milter=${4:?milter address, e.g. inet:127.0.0.1:8891}
  command -v postfix >/dev/null || { echo "postfix is not installed" >&2; exit 3; }
  [ "$(id -u)" = 0 ] || { echo "must run as root" >&2; exit 3; }
  uid=$(id -u postfix); gid=$(id -g postfix)
  mkdir -p "$dir"/{etc/sasl,spool,data,log,mail}
  chown postfix "$dir/data"
  chown postfix:postfix "$dir/mail"
  # Debian's Postfix reads $config_directory/sasl/smtpd.conf whatever
  # cyrus_sasl_config_path says; other builds follow cyrus_sasl_config_path.
  cat >"$dir/etc/sasl/smtpd.conf" <<EOF
pwcheck_method: auxprop
auxprop_plugin: sasldb
sasldb_path: $dir/sasldb2
mech_list: PLAIN LOGIN
EOF
  cat >"$dir/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $dir/spool
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = $dir/log/maillog
maillog_file_prefixes = $dir/log
myhostname = $realm
mydomain = $realm
myorigin = $realm
mydestination =
relay_domains =
alias_maps =
alias_database =
local_recipient_maps =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject
default_transport = discard:no-delivery
relay_transport = discard:no-delivery
local_transport = discard:no-delivery
virtual_mailbox_domains = example.org
virtual_mailbox_base = $dir/mail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
virtual_transport = virtual
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
smtputf8_enable = no
soft_bounce = no
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = $dir/etc/sasl
smtpd_sasl_local_domain = $realm
smtpd_sasl_security_options = noanonymous
smtpd_tls_security_level = none
smtpd_milters = $milter
non_smtpd_milters =
milter_protocol = 6
milter_default_action = tempfail
milter_connect_timeout = 5s
milter_command_timeout = 30s
milter_content_timeout = 60s
EOF
  if [ -n "${PF_MAIN_CF_EXTRA:-}" ]; then
    while IFS= read -r line; do
      [ -n "$line" ] && postconf -c "$dir/etc" -e "$line"
    done <<<"$PF_MAIN_CF_EXTRA"
  fi
  write_master_cf "$smtp_port"
  start_postfix "$smtp_port"
  ;;
relay)
  smtp_port=${3:?SMTP port}
  next_port=${4:?the next hop: its SMTP port on 127.0.0.1}
  command -v postfix >/dev/null || { echo "postfix is not installed" >&2; exit 3; }
  [ "$(id -u)" = 0 ] || { echo "must run as root" >&2; exit 3; }
  uid=$(id -u postfix); gid=$(id -g postfix)
  mkdir -p "$dir"/{etc,spool,data,log,mail}
  chown postfix "$dir/data"
  chown postfix:postfix "$dir/mail"
  # Another host name than the receiving instance's: Postfix will not relay to a
  # server that greets with its own name ("loops back to myself").
  cat >"$dir/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $dir/spool
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = $dir/log/maillog
maillog_file_prefixes = $dir/log
myhostname = sender.localdomain
mydomain = sender.localdomain
myorigin = sender.localdomain
mydestination =
relay_domains =
alias_maps =
alias_database =
local_recipient_maps =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:$next_port
default_transport = smtp
relay_transport = smtp
local_transport = discard:no-delivery
virtual_mailbox_domains = example.com
virtual_mailbox_base = $dir/mail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
virtual_transport = virtual
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_peername_lookup = no
smtputf8_enable = no
soft_bounce = no
smtpd_tls_security_level = none
EOF
  write_master_cf "$smtp_port"
  printf '%s\n' \
    'smtp      unix  -       -       n       -       -       smtp' \
    'relay     unix  -       -       n       -       -       smtp' >>"$dir/etc/master.cf"
  start_postfix "$smtp_port"
  ;;
user)
  name=${3:?user name}; password=${4:?password}
  printf '%s' "$password" | saslpasswd2 -p -c -f "$dir/sasldb2" -u "$realm" "$name"
  # smtpd runs as postfix and reads the SASL database.
  chown root:postfix "$dir/sasldb2"; chmod 640 "$dir/sasldb2"
  ;;
stop)
  if [ -f "$dir/etc/main.cf" ]; then
    postfix -c "$dir/etc" stop >/dev/null 2>&1 || true
    # postfix stop returns before every daemon has exited.
    for _ in $(seq 1 50); do
      postfix -c "$dir/etc" status >/dev/null 2>&1 || break
      sleep 0.1
    done
  fi
  ;;
*)
  sed -n '2,23p' "$0"; exit 2
  ;;
esac
