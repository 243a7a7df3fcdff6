-- Doorman's refusal for HAProxy in tcp mode (contrib/haproxy/, Doorman's README).
--
-- HAProxy's tcp mode cannot write text of its own: "tcp-request content
-- reject" only closes. A client that Doorman refuses, or that is over the
-- per-address limit Doorman handed over, is given to this service instead,
-- which sends the line Doorman worded in the client's protocol
-- (421 4.7.0 ..., -ERR [SYS/TEMP] ..., * BYE [UNAVAILABLE] ...) and closes.
-- With no line (the implicit-TLS ports, which expect a handshake first) it
-- only closes.
--
-- Loaded in the global section: lua-load-per-thread /etc/haproxy/doorman.lua
-- Used as:   tcp-request content use-service lua.doorman_refuse if ...

core.register_service("doorman_refuse", "tcp", function(applet)
  local text = applet:get_var("sess.doorman.text")
  if text ~= nil and text ~= "" then
    applet:send(text .. "\r\n")
  end
  -- Returning ends the applet: HAProxy flushes the line, then closes.
end)
