# Dashboard (DESIGN §2): every tenant at <slug>.<domain>, the lowest-priority router so the explicit
# hosts (www, docs, tracker...) always win. Secrets come only from the Nomad Variable
# nomad/jobs/dashboard (DATABASE_URL, REDIS_URL, SECRETS_KEY, SESSION_SECRET, SMTP_*) through a template.

variable "datacenters" {
  type        = string
  description = "JSON list of Nomad datacenters to run in, e.g. [\"*\"]."
}

variable "image" {
  type        = string
  description = "Full reference of the iot apps image (runs `iot dashboard`)."
}

variable "domain" {
  type        = string
  description = "Base domain, e.g. my-iot-app.com."
}

variable "monitor_names" {
  type        = string
  description = "Comma-separated monitor names: reserved hostnames, never tenant slugs."
}

variable "count" {
  type        = number
  description = "Number of dashboard instances."
}

variable "cpu" {
  type        = number
  description = "CPU shares (MHz) per instance."
}

variable "memory" {
  type        = number
  description = "Memory (MiB) per instance."
}

variable "app_port" {
  type        = number
  default     = 8000
  description = "Port the service listens on inside its container (APP_PORT)."
}

variable "log_level" {
  type        = string
  default     = "info"
  description = "debug, info, warning or error."
}

locals {
  # The domain as a Go regexp literal: dots escaped.
  domain_regex = replace(var.domain, ".", "\\.")
}

variable "max_request_body_bytes" {
  type        = number
  default     = 4194304
  description = "Largest request body Traefik forwards (413 above it, read in full before forwarding); the app enforces the same as MAX_REQUEST_BODY_BYTES."
}

job "dashboard" {
  type        = "service"
  datacenters = jsondecode(var.datacenters)

  update {
    max_parallel      = 1
    canary            = 1
    auto_promote      = true
    auto_revert       = true
    health_check      = "checks"
    min_healthy_time  = "10s"
    healthy_deadline  = "3m"
    progress_deadline = "10m"
  }

  group "dashboard" {
    count = var.count
    # On a deploy or drain the service leaves Consul first; the task stops only after Traefik's
    # Consul Catalog refresh (15s) has dropped it, so no request is routed to a stopped task.
    shutdown_delay = "20s"

    spread {
      attribute = "${node.datacenter}"
    }

    network {
      mode = "bridge"
      port "http" {
        to = var.app_port
      }
    }

    service {
      name     = "dashboard"
      provider = "consul"
      port     = "http"
      tags = [
        "traefik.enable=true",
        # Any single label under the domain; priority 1 lets every explicit Host() router win.
        "traefik.http.routers.dashboard.rule=HostRegexp(`^[a-z0-9-]+\\.${local.domain_regex}$`)",
        "traefik.http.routers.dashboard.priority=1",
        "traefik.http.routers.dashboard.entrypoints=websecure",
        "traefik.http.routers.dashboard.tls=true",
        # Bodies are buffered and capped at the edge, before they reach a container.
        "traefik.http.middlewares.dashboard-body-limit.buffering.maxRequestBodyBytes=${var.max_request_body_bytes}",
        "traefik.http.routers.dashboard.middlewares=dashboard-body-limit",
      ]

      check {
        name     = "dashboard-health"
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "dashboard" {
      driver = "docker"

      config {
        image      = var.image
        entrypoint = ["iot"]
        args       = ["dashboard"]
        ports      = ["http"]
      }

      env {
        APP_PORT               = var.app_port
        DOMAIN                 = var.domain
        MONITOR_NAMES          = var.monitor_names
        LOG_LEVEL              = var.log_level
        MAX_REQUEST_BODY_BYTES = var.max_request_body_bytes
        # Behind Cloudflare and Traefik every request is HTTPS.
        COOKIE_SECURE      = "true"
        TRACKER_PUBLIC_URL = "https://tracker.${var.domain}"
      }

      template {
        data        = <<-EOT
        {{ with nomadVar "nomad/jobs/dashboard" }}
        DATABASE_URL={{ .DATABASE_URL }}
        REDIS_URL={{ .REDIS_URL }}
        SECRETS_KEY={{ .SECRETS_KEY }}
        SMTP_HOST={{ .SMTP_HOST }}
        SMTP_PORT={{ .SMTP_PORT }}
        SMTP_SECURITY={{ .SMTP_SECURITY }}
        SMTP_USERNAME={{ .SMTP_USERNAME | toJSON }}
        SMTP_PASSWORD={{ .SMTP_PASSWORD | toJSON }}
        SMTP_FROM={{ .SMTP_FROM | toJSON }}
        SESSION_SECRET={{ .SESSION_SECRET }}
        {{ end }}
        EOT
        destination = "secrets/app.env"
        env         = true
        change_mode = "restart"
      }

      resources {
        cpu    = var.cpu
        memory = var.memory
      }
    }
  }
}
