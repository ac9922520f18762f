# Marketing site (DESIGN §2): the apex and www.<domain>. Static files served by unprivileged nginx;
# no secrets, so no Nomad Variable.

variable "datacenters" {
  type        = string
  description = "JSON list of Nomad datacenters to run in, e.g. [\"*\"]."
}

variable "image" {
  type        = string
  description = "Full reference of the marketing site image."
}

variable "domain" {
  type        = string
  description = "Base domain, e.g. my-iot-app.com."
}

variable "count" {
  type        = number
  description = "Number of instances."
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
  default     = 8080
  description = "Port nginx listens on inside the container."
}

variable "max_request_body_bytes" {
  type        = number
  default     = 65536
  description = "Largest request body Traefik forwards (413 above it); this service only answers GET."
}

job "marketing" {
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

  group "marketing" {
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
      name     = "marketing"
      provider = "consul"
      port     = "http"
      tags = [
        "traefik.enable=true",
        "traefik.http.routers.marketing.rule=Host(`${var.domain}`) || Host(`www.${var.domain}`)",
        "traefik.http.routers.marketing.entrypoints=websecure",
        "traefik.http.routers.marketing.tls=true",
        # Bodies are buffered and capped at the edge, before they reach a container.
        "traefik.http.middlewares.marketing-body-limit.buffering.maxRequestBodyBytes=${var.max_request_body_bytes}",
        "traefik.http.routers.marketing.middlewares=marketing-body-limit",
      ]

      check {
        name     = "marketing-health"
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "marketing" {
      driver = "docker"

      config {
        image = var.image
        ports = ["http"]
      }

      env {
        DOMAIN        = var.domain
        PUBLIC_SCHEME = "https"
      }

      resources {
        cpu    = var.cpu
        memory = var.memory
      }
    }
  }
}
