# Worker (DESIGN §2): schedules checks, evaluates results; its status API is worker.<domain> on
# Traefik's internal entrypoint only (cluster and admin addresses, never the public edge).
# One instance leads through a Redis lock, the others stand by. Secrets come only from the
# Nomad Variable nomad/jobs/worker (DATABASE_URL, REDIS_URL, SECRETS_KEY, SMTP_*) through a template.

variable "datacenters" {
  type        = string
  description = "JSON list of Nomad datacenters to run in, e.g. [\"*\"]."
}

variable "image" {
  type        = string
  description = "Full reference of the iot apps image (runs `iot worker`)."
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
  description = "Number of worker instances."
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

variable "max_request_body_bytes" {
  type        = number
  default     = 65536
  description = "Largest request body Traefik forwards (413 above it); this service only answers GET."
}

job "worker" {
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

  group "worker" {
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
      name     = "worker"
      provider = "consul"
      port     = "http"
      tags = [
        "traefik.enable=true",
        "traefik.http.routers.worker.rule=Host(`worker.${var.domain}`)",
        # Never public: Traefik's internal entrypoint (:8081) is reachable from the private network
        # and through an SSH tunnel, never through Cloudflare (DESIGN §2).
        "traefik.http.routers.worker.entrypoints=internal",
        # Bodies are buffered and capped at the edge, before they reach a container.
        "traefik.http.middlewares.worker-body-limit.buffering.maxRequestBodyBytes=${var.max_request_body_bytes}",
        "traefik.http.routers.worker.middlewares=worker-body-limit",
      ]

      check {
        name     = "worker-health"
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "worker" {
      driver = "docker"

      config {
        image      = var.image
        entrypoint = ["iot"]
        args       = ["worker"]
        ports      = ["http"]
      }

      env {
        APP_PORT      = var.app_port
        DOMAIN        = var.domain
        MONITOR_NAMES = var.monitor_names
        LOG_LEVEL     = var.log_level
      }

      template {
        data        = <<-EOT
        {{ with nomadVar "nomad/jobs/worker" }}
        DATABASE_URL={{ .DATABASE_URL }}
        REDIS_URL={{ .REDIS_URL }}
        SECRETS_KEY={{ .SECRETS_KEY }}
        SMTP_HOST={{ .SMTP_HOST }}
        SMTP_PORT={{ .SMTP_PORT }}
        SMTP_SECURITY={{ .SMTP_SECURITY }}
        SMTP_USERNAME={{ .SMTP_USERNAME | toJSON }}
        SMTP_PASSWORD={{ .SMTP_PASSWORD | toJSON }}
        SMTP_FROM={{ .SMTP_FROM | toJSON }}
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
