# Traefik v3 on every client node (DESIGN §4.3): the only process Cloudflare talks to.
# Host networking so :80/:443 are the node's ports; the whole static configuration is ONE file
# rendered by a template (Traefik refuses to mix file, flags and env). Routers come from Consul
# Catalog tags of the app jobs; the Cloudflare Origin CA certificate comes from the Nomad Variable
# nomad/jobs/traefik that Pulumi writes (origin_cert, origin_key, consul_token, consul_ca).
# Only Cloudflare's origin pulls for our hostnames get through websecure: the client certificate
# Cloudflare presents (Authenticated Origin Pulls) is required and verified against Cloudflare's
# origin-pull CA, and sniStrict refuses names we hold no certificate for. The `internal` entrypoint
# (no firewall rule opens it) serves hosts that must never be public, such as the worker's /status.

variable "datacenters" {
  type        = string
  description = "JSON list of Nomad datacenters to run in, e.g. [\"*\"]."
}

variable "traefik_version" {
  type        = string
  description = "Pinned Traefik v3 release, e.g. v3.6.25 (image traefik:<version>)."
}

variable "cloudflare_ipv4" {
  type        = string
  description = "JSON list of Cloudflare IPv4 ranges: the only proxies whose X-Forwarded-* headers are trusted."
}

variable "cloudflare_ipv6" {
  type        = string
  description = "JSON list of Cloudflare IPv6 ranges."
}

variable "origin_pull_ca" {
  type        = string
  description = "PEM of Cloudflare's Authenticated Origin Pulls CA (public; components/certs/, fingerprint pinned)."
}

variable "consul_address" {
  type        = string
  default     = "127.0.0.1:8501"
  description = "Local Consul agent HTTPS address Traefik reads the catalog from."
}

variable "cpu" {
  type        = number
  default     = 200
  description = "CPU shares (MHz) per Traefik instance."
}

variable "memory" {
  type        = number
  default     = 128
  description = "Memory (MiB) per Traefik instance."
}

variable "log_level" {
  type        = string
  default     = "INFO"
  description = "Traefik log level (DEBUG, INFO, WARN, ERROR)."
}

locals {
  trusted_ips = concat(jsondecode(var.cloudflare_ipv4), jsondecode(var.cloudflare_ipv6))

  # Traefik's static configuration as data; yamlencode keeps it valid YAML whatever the inputs.
  static_config = {
    global = {
      checkNewVersion    = false
      sendAnonymousUsage = false
    }
    log       = { level = var.log_level, format = "json" }
    accessLog = { format = "json" }
    ping      = { entryPoint = "ping" }
    entryPoints = {
      web = {
        address          = ":80"
        forwardedHeaders = { trustedIPs = local.trusted_ips }
        http = {
          redirections = { entryPoint = { to = "websecure", scheme = "https", permanent = true } }
        }
      }
      websecure = {
        address          = ":443"
        forwardedHeaders = { trustedIPs = local.trusted_ips }
        http             = { tls = {} }
      }
      ping     = { address = ":8082" }
      internal = { address = ":8081" }
    }
    providers = {
      consulCatalog = {
        exposedByDefault = false
        # Go template raw strings (backticks) survive yamlencode's quoting.
        endpoint = {
          address = var.consul_address
          scheme  = "https"
          token   = "{{ with nomadVar `nomad/jobs/traefik` }}{{ .consul_token }}{{ end }}"
          tls     = { ca = "/secrets/consul-ca.pem" }
        }
      }
      # Dynamic configuration (the origin certificate) lives in files rendered from the Variable.
      file = { directory = "/secrets/dynamic", watch = true }
    }
  }

  # Dynamic TLS configuration. The `default` option applies to every websecure router. No default
  # certificate: a name we hold no certificate for gets no handshake (sniStrict).
  tls_config = {
    tls = {
      certificates = [{ certFile = "/secrets/origin.crt", keyFile = "/secrets/origin.key" }]
      options = {
        default = {
          minVersion = "VersionTLS12"
          sniStrict  = true
          clientAuth = {
            caFiles        = ["/local/cloudflare-origin-pull-ca.pem"]
            clientAuthType = "RequireAndVerifyClientCert"
          }
        }
      }
    }
  }
}

job "traefik" {
  type        = "system"
  datacenters = jsondecode(var.datacenters)

  # One node at a time, so Cloudflare always has healthy origins while Traefik rolls.
  update {
    max_parallel     = 1
    health_check     = "checks"
    min_healthy_time = "10s"
    healthy_deadline = "3m"
  }

  group "traefik" {
    network {
      mode = "host"
      port "web" {
        static = 80
      }
      port "websecure" {
        static = 443
      }
      port "ping" {
        static = 8082
      }
      port "internal" {
        static = 8081
      }
    }

    service {
      name     = "traefik"
      provider = "consul"
      port     = "ping"

      check {
        name     = "traefik-ping"
        type     = "http"
        path     = "/ping"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "traefik" {
      driver = "docker"

      config {
        # Host networking: Traefik binds :80, :443, :8081 and :8082 itself (the group reserves them).
        image        = "traefik:${var.traefik_version}"
        network_mode = "host"
        args         = ["--configFile=/secrets/traefik.yml"]
      }

      # The static configuration: one file, holds the Consul token, so it lives in secrets/.
      template {
        data        = yamlencode(local.static_config)
        destination = "secrets/traefik.yml"
        perms       = "0600"
        change_mode = "restart"
      }

      template {
        data        = yamlencode(local.tls_config)
        destination = "secrets/dynamic/tls.yml"
        perms       = "0600"
        change_mode = "noop"
      }

      # Public certificate, passed as a plain var: not a secret, and known at preview time.
      template {
        data        = var.origin_pull_ca
        destination = "local/cloudflare-origin-pull-ca.pem"
        change_mode = "restart"
      }

      template {
        data        = "{{ with nomadVar `nomad/jobs/traefik` }}{{ .consul_ca }}{{ end }}"
        destination = "secrets/consul-ca.pem"
        change_mode = "restart"
      }

      template {
        data        = "{{ with nomadVar `nomad/jobs/traefik` }}{{ .origin_cert }}{{ end }}"
        destination = "secrets/origin.crt"
        change_mode = "restart"
      }

      template {
        data        = "{{ with nomadVar `nomad/jobs/traefik` }}{{ .origin_key }}{{ end }}"
        destination = "secrets/origin.key"
        perms       = "0600"
        change_mode = "restart"
      }

      resources {
        cpu    = var.cpu
        memory = var.memory
      }
    }
  }
}
