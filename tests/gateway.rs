//! The HTTP gateway against the real server: routes by path and host, 404, 413, 500 on a trap,
//! 504 on a deadline, 503 under overload, a large streamed body, outbound HTTP allowed and
//! denied, conflicting routes refused, scale to zero and back, concurrent requests to several
//! services, and the request figures in /metrics. Requests are real HTTP/1.1 on loopback.

mod common;

use common::aws::boto3;
use common::http::{get, request};
use common::server::Server;
use common::{Wasi, guest};

/// Registers `family` serving the `http_hello` component with `labels`, and creates service
/// `family` with `desired` tasks; waits until it is stable.
fn http_service(server: &Server, family: &str, labels: &str, desired: u32) {
    let image = guest(Wasi::P2, "http_hello").display().to_string();
    let out = boto3(
        &server.endpoint,
        &format!(
            r#"
ecs.register_task_definition(family='{family}', memory='64', containerDefinitions=[
    {{'name': 'web', 'image': '{image}', 'dockerLabels': {labels}}}])
ecs.create_service(serviceName='{family}', taskDefinition='{family}', desiredCount={desired})
ecs.get_waiter('services_stable').wait(services=['{family}'], WaiterConfig={{'Delay': 0.2, 'MaxAttempts': 150}})
print('stable')
"#
        ),
    );
    assert!(out.contains("stable"), "{out}");
}

/// GETs until the route answers something other than 404/503 (the route table follows the
/// store within milliseconds).
fn get_when_routed(address: &str, host: &str, path: &str) -> common::http::Reply {
    for _ in 0..200 {
        let reply = get(address, host, path);
        if reply.status != 404 && reply.status != 503 {
            return reply;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    get(address, host, path)
}

/// The task that served a reply (the gateway's `x-wasmgate-task` header).
fn served_by(reply: &common::http::Reply) -> Option<String> {
    reply
        .headers
        .iter()
        .find(|(k, _)| k == "x-wasmgate-task")
        .map(|(_, v)| v.clone())
}

/// A task's output so far (stdout and stderr), read with `wasmgate logs`.
fn task_log(server: &Server, task: &str) -> String {
    let data = tempfile::tempdir().unwrap();
    let output = common::wasmgate(data.path())
        .args(["logs", task])
        .env("WASMGATE_ENDPOINT", &server.endpoint)
        .output()
        .expect("wasmgate logs runs");
    assert!(output.status.success(), "wasmgate logs {task}: {output:?}");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn routes_by_path_and_host_and_answers_errors_with_their_codes() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let gw = server.gateway.clone();
    http_service(
        &server,
        "hello",
        "{'wasmgate.http.path': '/hello', 'wasmgate.http.timeout': '1', 'wasmgate.http.max-request-bytes': '1000'}",
        1,
    );
    http_service(
        &server,
        "byhost",
        "{'wasmgate.http.host': 'api.localhost', 'wasmgate.http.path': '/hello'}",
        1,
    );

    let reply = get_when_routed(&gw, "localhost", "/hello/there?x=1");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.text(),
        "Hello from wasmgate! You asked for /hello/there?x=1\n"
    );
    // The host route wins for its host; the path alone for others.
    let by_host = get_when_routed(&gw, "api.localhost:8081", "/hello");
    assert_eq!(by_host.status, 200);
    assert_ne!(
        served_by(&by_host),
        served_by(&reply),
        "{by_host:?} {reply:?}"
    );
    // Whole segments only, and nothing for other paths.
    assert_eq!(get(&gw, "localhost", "/helloworld").status, 404);
    let missing = get(&gw, "localhost", "/nothing");
    assert_eq!(missing.status, 404);
    assert!(
        missing
            .text()
            .starts_with("no route for localhost /nothing")
    );

    // 413: declared too long, and chunked past the limit.
    let big = vec![b'a'; 5000];
    let declared = request(&gw, "POST", "localhost", "/hello/echo", &big, false).unwrap();
    assert_eq!(declared.status, 413, "{declared:?}");
    let chunked = request(&gw, "POST", "localhost", "/hello/echo", &big, true).unwrap();
    assert_eq!(chunked.status, 413, "{chunked:?}");
    let small = request(&gw, "POST", "localhost", "/hello/echo", b"ping", true).unwrap();
    assert_eq!((small.status, small.text().as_str()), (200, "ping"));

    // 500 on a trap, with the trap named; 504 past the deadline (spinning or sleeping).
    let trap = get(&gw, "localhost", "/hello/trap");
    assert_eq!(trap.status, 500);
    assert!(trap.text().contains("WasmTrap"), "{}", trap.text());
    assert_eq!(get(&gw, "localhost", "/hello/spin").status, 504);
    assert_eq!(get(&gw, "localhost", "/hello/hang").status, 504);
    // Out of memory (limit 64 MiB) is a 500 that says so.
    let oom = get(&gw, "localhost", "/hello/memory?mib=100");
    assert_eq!(oom.status, 500);
    assert!(oom.text().contains("OutOfMemoryError"), "{}", oom.text());
    // After all that, the service still answers.
    assert_eq!(get(&gw, "localhost", "/hello").status, 200);

    let metrics = common::http::get(
        server.endpoint.trim_start_matches("http://"),
        "localhost",
        "/metrics",
    )
    .text();
    let count = metrics
        .lines()
        .find(|l| {
            l.starts_with("wasmgate_http_request_duration_seconds_count{service=\"default/hello\"}")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(count >= 8, "{metrics}");
    assert!(
        metrics.contains("wasmgate_http_responses_total{service=\"default/hello\",code=\"5xx\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("wasmgate_http_instantiate_seconds_bucket"));

    // The requests' CPU reaches the serving task's stats (reported every 2 s).
    let task = served_by(&reply).expect("x-wasmgate-task");
    let api = server.endpoint.trim_start_matches("http://").to_string();
    let mut cpu_nanos = 0;
    for _ in 0..100 {
        let stats = get(&api, "localhost", &format!("/v1/tasks/{task}/stats")).text();
        let stats: serde_json::Value = serde_json::from_str(&stats).unwrap_or_default();
        cpu_nanos = stats["web"]["cpu_stats"]["cpu_usage"]["total_usage"]
            .as_u64()
            .unwrap_or(0);
        if cpu_nanos > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(cpu_nanos > 0, "no CPU reported for task {task}");

    // A second service on the same route is refused, naming the one that has it.
    let image = guest(Wasi::P2, "http_hello").display().to_string();
    let out = boto3(
        &server.endpoint,
        &format!(
            r#"
ecs.register_task_definition(family='copycat', memory='64', containerDefinitions=[
    {{'name': 'web', 'image': '{image}', 'dockerLabels': {{'wasmgate.http.path': '/hello'}}}}])
try:
    ecs.create_service(serviceName='copycat', taskDefinition='copycat', desiredCount=1)
except ecs.exceptions.InvalidParameterException as e:
    print('refused:', e.response['Error']['Message'])
try:
    ecs.register_task_definition(family='bad', memory='64', containerDefinitions=[
        {{'name': 'web', 'image': '{image}', 'dockerLabels': {{'wasmgate.http.timeout': 'soon'}}}}])
except ecs.exceptions.ClientException as e:
    print('bad labels:', e.response['Error']['Message'])
"#
        ),
    );
    assert!(
        out.contains("refused: taskDefinition: its route (host any, path /hello) is already served by service hello"),
        "{out}"
    );
    assert!(out.contains("wasmgate.http.timeout"), "{out}");
}

#[test]
fn overload_is_answered_503_after_the_queue_timeout() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let gw = server.gateway.clone();
    http_service(
        &server,
        "narrow",
        "{'wasmgate.http.path': '/', 'wasmgate.http.concurrency': '1', 'wasmgate.http.queue-timeout': '0.2', 'wasmgate.http.timeout': '3'}",
        1,
    );
    let first = get_when_routed(&gw, "localhost", "/");
    assert_eq!(first.status, 200);
    let task = served_by(&first).expect("x-wasmgate-task");
    let holder = {
        let gw = gw.clone();
        std::thread::spawn(move || get(&gw, "localhost", "/hang").status)
    };
    // The slow request holds the only slot once its handler runs, which it says in the log.
    let mut log = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !log.contains("hang: holding the request") {
        assert!(
            std::time::Instant::now() < deadline,
            "the /hang request never ran: {log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        log = task_log(&server, &task);
    }
    let refused = get(&gw, "localhost", "/");
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(refused.text().contains("busy"), "{}", refused.text());
    assert_eq!(holder.join().unwrap(), 504);
    // Once the slot is free again, requests are served.
    assert_eq!(get(&gw, "localhost", "/").status, 200);
}

#[test]
fn large_bodies_stream_and_the_response_limit_cuts() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let gw = server.gateway.clone();
    http_service(
        &server,
        "big",
        "{'wasmgate.http.path': '/big', 'wasmgate.http.max-response-bytes': '5000000'}",
        1,
    );
    let reply = get_when_routed(&gw, "localhost", "/big/big?bytes=4000000");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), 4_000_000);
    assert!(reply.body.iter().all(|b| *b == b'x'));
    // Past the limit, the body is cut short.
    let cut = get(&gw, "localhost", "/big/big?bytes=8000000");
    assert!(cut.body.len() < 8_000_000, "{}", cut.body.len());
    assert_eq!(get(&gw, "localhost", "/big").status, 200);
}

#[test]
fn outbound_http_is_denied_unless_the_host_is_allowed() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let gw = server.gateway.clone();
    let api = server.endpoint.trim_start_matches("http://").to_string();
    http_service(&server, "closed", "{'wasmgate.http.path': '/closed'}", 1);
    http_service(
        &server,
        "open",
        &format!("{{'wasmgate.http.path': '/open', 'wasmgate.http.outbound-hosts': '{api}'}}"),
        1,
    );
    let target = format!("http://{api}/metrics");
    let denied = get_when_routed(&gw, "localhost", &format!("/closed/fetch?url={target}"));
    assert!(
        denied.text().contains("HttpRequestDenied"),
        "{}",
        denied.text()
    );
    let allowed = get_when_routed(&gw, "localhost", &format!("/open/fetch?url={target}"));
    assert_eq!(allowed.text(), "status 200\n");
}

#[test]
fn an_idle_service_scales_to_zero_and_back_on_the_next_request() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let gw = server.gateway.clone();
    // Created at zero: the first request starts a task and is served by it.
    http_service(
        &server,
        "lazy",
        "{'wasmgate.http.path': '/lazy', 'wasmgate.http.idle-timeout': '1'}",
        0,
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut first = get(&gw, "localhost", "/lazy");
    while first.status != 200 {
        // Only until the route is known: a known route at zero waits for its task.
        assert_eq!(first.status, 404, "{first:?}");
        assert!(std::time::Instant::now() < deadline, "the route never came");
        std::thread::sleep(std::time::Duration::from_millis(20));
        first = get(&gw, "localhost", "/lazy");
    }
    let woken = served_by(&first).expect("x-wasmgate-task");
    // What happened is read afterwards from the records, so a slow start of the client below
    // cannot miss the moment the service was awake: the task that served the request was the
    // service's, and it was stopped when the service went back to zero.
    let out = boto3(
        &server.endpoint,
        &format!(
            r#"
import time
for _ in range(300):
    s = ecs.describe_services(services=['lazy'])['services'][0]
    t = ecs.describe_tasks(tasks=['{woken}'])['tasks'][0]
    if s['desiredCount'] == 0 and s['runningCount'] == 0 and t['lastStatus'] == 'STOPPED':
        break
    time.sleep(0.1)
print('asleep', s['desiredCount'], s['runningCount'])
print('why', [e['message'] for e in s['events'] if 'desiredCount set to' in e['message']][:2])
print('woken', t['group'], t['lastStatus'], t.get('stopCode'))
"#
        ),
    );
    assert!(out.contains("asleep 0 0"), "{out}");
    assert!(
        out.contains("woken service:lazy STOPPED ServiceSchedulerInitiated"),
        "{out}"
    );
    assert!(out.contains("no request for 1s"), "{out}");
    assert!(
        out.contains("a request arrived while it was scaled to zero"),
        "{out}"
    );
    // And back again.
    assert_eq!(get(&gw, "localhost", "/lazy/again").status, 200);
}

#[test]
fn concurrent_requests_to_several_services() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let gw = server.gateway.clone();
    for name in ["one", "two", "three"] {
        http_service(
            &server,
            name,
            &format!("{{'wasmgate.http.path': '/{name}'}}"),
            2,
        );
        assert_eq!(
            get_when_routed(&gw, "localhost", &format!("/{name}")).status,
            200
        );
    }
    let threads: Vec<_> = (0..24)
        .map(|i| {
            let gw = gw.clone();
            let name = ["one", "two", "three"][i % 3];
            std::thread::spawn(move || {
                let path = format!("/{name}/{i}");
                let reply = get(&gw, "localhost", &path);
                (reply.status, reply.text(), path)
            })
        })
        .collect();
    for thread in threads {
        let (status, text, path) = thread.join().unwrap();
        assert_eq!(status, 200, "{path}: {text}");
        assert_eq!(text, format!("Hello from wasmgate! You asked for {path}\n"));
    }
}

#[test]
fn an_express_service_created_through_boto3_answers_http_on_its_ingress_endpoint() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let image = guest(Wasi::P2, "http_hello").display().to_string();
    let out = boto3(
        &server.endpoint,
        &format!(
            r#"
import json
role = 'arn:aws:iam::000000000000:role/ecsInfrastructureRole'
s = ecs.create_express_gateway_service(serviceName='shop', infrastructureRoleArn=role, executionRoleArn='arn:aws:iam::000000000000:role/exec',
    primaryContainer={{'image': '{image}', 'containerPort': 8080, 'environment': [{{'name': 'MODE', 'value': 'one'}}]}},
    scalingTarget={{'minTaskCount': 2, 'maxTaskCount': 4}}, tags=[{{'key': 'team', 'value': 'web'}}])['service']
c = s['activeConfigurations'][0]
print('created', s['status']['statusCode'], s['serviceArn'].split(':')[-1], s['infrastructureRoleArn'] == role, c['cpu'], c['memory'], c['healthCheckPath'])
print('endpoint', c['ingressPaths'][0]['accessType'], c['ingressPaths'][0]['endpoint'])
print('definition', c['taskDefinitionArn'].split('/')[-1])
td = ecs.describe_task_definition(taskDefinition=c['taskDefinitionArn'])['taskDefinition']
print('container', td['containerDefinitions'][0]['name'], td['containerDefinitions'][0]['dockerLabels'])
ecs.get_waiter('services_stable').wait(services=['shop'], WaiterConfig={{'Delay': 0.2, 'MaxAttempts': 150}})
print('running', ecs.describe_services(services=['shop'])['services'][0]['runningCount'])
d = ecs.describe_express_gateway_service(serviceArn=s['serviceArn'], include=['TAGS'])['service']
print('described', d['status']['statusCode'], len(d['activeConfigurations']), d['tags'], d['currentDeployment'].split(':')[-1].split('/')[0])
try:
    ecs.describe_express_gateway_service(serviceArn=s['serviceArn'].replace('shop', 'ghost'))
except ecs.exceptions.ResourceNotFoundException as e:
    print('ghost', e.response['Error']['Code'])
u = ecs.update_express_gateway_service(serviceArn=s['serviceArn'], cpu='512', memory='1024', scalingTarget={{'minTaskCount': 1}})['service']
t = u['targetConfiguration']
print('updated', t['cpu'], t['taskDefinitionArn'].split('/')[-1], t['scalingTarget']['minTaskCount'], t['primaryContainer']['containerPort'])
ecs.get_waiter('services_stable').wait(services=['shop'], WaiterConfig={{'Delay': 0.2, 'MaxAttempts': 150}})
d = ecs.describe_express_gateway_service(serviceArn=s['serviceArn'])['service']
print('after update', len(d['activeConfigurations']), d['activeConfigurations'][0]['cpu'], ecs.describe_services(services=['shop'])['services'][0]['runningCount'])
print('ENDPOINT', c['ingressPaths'][0]['endpoint'])
"#
        ),
    );
    assert!(
        out.contains("created ACTIVE service/default/shop True 256 512 /ping"),
        "{out}"
    );
    assert!(
        out.contains("endpoint PUBLIC http://shop.default.localhost:"),
        "{out}"
    );
    assert!(out.contains("definition express-shop:1"), "{out}");
    assert!(
        out.contains("container Main {'wasmgate.http.host': 'shop.default.localhost'}"),
        "{out}"
    );
    assert!(out.contains("running 2"), "{out}");
    assert!(
        out.contains("described ACTIVE 1 [{'key': 'team', 'value': 'web'}] service-deployment"),
        "{out}"
    );
    assert!(out.contains("ghost ResourceNotFoundException"), "{out}");
    assert!(out.contains("updated 512 express-shop:2 1 8080"), "{out}");
    assert!(out.contains("after update 1 512 1"), "{out}");
    // The endpoint answers through the gateway.
    let endpoint = out
        .lines()
        .find_map(|l| l.strip_prefix("ENDPOINT "))
        .unwrap()
        .trim()
        .to_string();
    let authority = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let port = authority.rsplit(':').next().unwrap();
    assert_eq!(format!("127.0.0.1:{port}"), server.gateway);
    let reply = get_when_routed(&server.gateway, &authority, "/orders");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "Hello from wasmgate! You asked for /orders\n");
    // Another host name is not this service's.
    assert_eq!(
        get(&server.gateway, "other.localhost", "/orders").status,
        404
    );

    let out = boto3(
        &server.endpoint,
        r#"
arn = ecs.describe_services(services=['shop'])['services'][0]['serviceArn']
d = ecs.delete_express_gateway_service(serviceArn=arn)['service']
print('deleted', d['status']['statusCode'])
import time
for _ in range(150):
    if ecs.describe_express_gateway_service(serviceArn=arn)['service']['status']['statusCode'] == 'INACTIVE':
        break
    time.sleep(0.2)
print('finally', ecs.describe_express_gateway_service(serviceArn=arn)['service']['status']['statusCode'])
try:
    ecs.delete_express_gateway_service(serviceArn=arn)
except ecs.exceptions.ServiceNotActiveException as e:
    print('again', e.response['Error']['Code'])
"#,
    );
    assert!(out.contains("deleted DRAINING"), "{out}");
    assert!(out.contains("finally INACTIVE"), "{out}");
    assert!(out.contains("again ServiceNotActiveException"), "{out}");
}

#[test]
fn gateways_are_views_of_the_listener_with_associations_routes_and_deletion_protection() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    http_service(&server, "hello", "{'wasmgate.http.path': '/hello'}", 1);
    let port = server.gateway.rsplit(':').next().unwrap().to_string();
    let out = boto3(
        &server.endpoint,
        r#"
role = 'arn:aws:iam::000000000000:role/ecsGatewayRole'
g = ecs.create_gateway(name='edge', infrastructureRoleArn=role, clientToken='t1', configuration={'hostSharedAlb': {'scheme': 'internet-facing', 'networkConfiguration': {'subnets': ['subnet-1']}}}, tags=[{'key': 'k', 'value': 'v'}])
print('created', g['status'], g['gatewayArn'].split(':')[-1])
print('again', ecs.create_gateway(name='edge', infrastructureRoleArn=role, clientToken='t1', configuration={'hostSharedAlb': {}})['gatewayArn'] == g['gatewayArn'])
try:
    ecs.create_gateway(name='edge', infrastructureRoleArn=role, configuration={'hostSharedAlb': {}})
except ecs.exceptions.InvalidParameterException as e:
    print('twice', e.response['Error']['Message'])
for bad in [{'protocol': 'HTTPS'}, {'webACLArn': 'arn:aws:wafv2:x'}, {'accessLogs': {'destination': {'s3': {'bucket': 'b'}}}}]:
    try:
        ecs.create_gateway(name='bad', infrastructureRoleArn=role, configuration={'hostSharedAlb': bad})
    except ecs.exceptions.UnsupportedFeatureException as e:
        print('unsupported', e.response['Error']['Message'].split(':')[0])
d = ecs.describe_gateway(gateway='edge')['gateway']
alb = d['configuration']['hostSharedAlb']
print('described', d['status'], d['accessType'], d['deletionProtection'], alb['protocol'], alb['port'], alb['currentAlbCount'], alb['networkConfiguration']['subnets'], d['tags'])
print('listed', [x['name'] for x in ecs.list_gateways()['gateways']], ecs.list_gateways(names=['nope'])['gateways'])
print('no routes yet', ecs.list_gateway_routes(gateway='edge')['gatewayRoutes'])
a = ecs.associate_gateway_with_cluster(gateway='edge', cluster='default')
print('associated', a['status'], a['clusterArn'].split(':')[-1])
routes = ecs.list_gateway_routes(gateway='edge')['gatewayRoutes']
print('routes', [(r['serviceArn'].split('/')[-1], r['serviceContainerPortName'], r['status']) for r in routes])
r = ecs.describe_gateway_route(gatewayRouteArn=routes[0]['gatewayRouteArn'])['gatewayRoute']
print('route', r['status'], r['serviceUrl'], r['resources'])
res = ecs.describe_gateway_resources(gateway='edge')['gatewayResources']
print('resources', res['resources']['hostSharedAlb'][0]['gatewayRouteArns'] == [routes[0]['gatewayRouteArn']])
print('by service', len(ecs.list_gateway_routes(service='hello')['gatewayRoutes']), len(ecs.list_gateway_routes(cluster='other')['gatewayRoutes']))
print('associations', [(x['clusterArn'].split('/')[-1], x['status']) for x in ecs.list_gateway_cluster_associations(gateway='edge')['gatewayClusterAssociations']])
try:
    ecs.delete_gateway(gateway='edge')
except ecs.exceptions.ClientException as e:
    print('protected', 'deletion protection' in e.response['Error']['Message'])
u = ecs.update_gateway(gateway='edge', deletionProtection=False, configuration={'hostSharedAlb': {'maxAlbCount': 3}})
print('updated', u['status'], ecs.describe_gateway(gateway='edge')['gateway']['configuration']['hostSharedAlb']['maxAlbCount'])
try:
    ecs.delete_gateway(gateway='edge')
except ecs.exceptions.ClientException as e:
    print('associated still', 'disassociate' in e.response['Error']['Message'])
dis = ecs.disassociate_gateway_from_cluster(gateway='edge', cluster='default')
print('disassociating', dis['status'], [x['status'] for x in ecs.list_gateway_routes(gateway='edge')['gatewayRoutes']])
ecs.update_service(service='hello', desiredCount=0)
ecs.delete_service(service='hello')
print('inactive', [x['status'] for x in ecs.list_gateway_cluster_associations(gateway='edge')['gatewayClusterAssociations']])
try:
    ecs.disassociate_gateway_from_cluster(gateway='ghost', cluster='default')
except ecs.exceptions.GatewayNotFoundException as e:
    print('ghost', e.response['Error']['Code'])
print('deleted', ecs.delete_gateway(gateway='edge')['status'])
try:
    ecs.describe_gateway(gateway='edge')
except ecs.exceptions.GatewayNotFoundException as e:
    print('gone', e.response['Error']['Code'])
"#,
    );
    assert!(out.contains("created ACTIVE gateway/edge"), "{out}");
    assert!(out.contains("again True"), "{out}");
    assert!(
        out.contains("twice A gateway named edge already exists."),
        "{out}"
    );
    assert!(
        out.contains("unsupported configuration.hostSharedAlb.protocol HTTPS"),
        "{out}"
    );
    assert!(
        out.contains("unsupported configuration.hostSharedAlb.webACLArn"),
        "{out}"
    );
    assert!(
        out.contains("unsupported configuration.hostSharedAlb.accessLogs"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "described ACTIVE PUBLIC True HTTP {port} 1 ['subnet-1'] [{{'key': 'k', 'value': 'v'}}]"
        )),
        "{out}"
    );
    assert!(out.contains("listed ['edge'] []"), "{out}");
    assert!(out.contains("no routes yet []"), "{out}");
    assert!(out.contains("associated ACTIVE cluster/default"), "{out}");
    assert!(out.contains("routes [('hello', 'web', 'ACTIVE')]"), "{out}");
    assert!(
        out.contains(&format!(
            "route ACTIVE http://127.0.0.1:{port}/hello {{'hostSharedAlb': []}}"
        )),
        "{out}"
    );
    assert!(out.contains("resources True"), "{out}");
    assert!(out.contains("by service 1 0"), "{out}");
    assert!(
        out.contains("associations [('default', 'ACTIVE')]"),
        "{out}"
    );
    assert!(out.contains("protected True"), "{out}");
    assert!(out.contains("updated UPDATE_COMPLETE 3"), "{out}");
    assert!(out.contains("associated still True"), "{out}");
    assert!(
        out.contains("disassociating DISASSOCIATING ['DELETE_IN_PROGRESS']"),
        "{out}"
    );
    assert!(out.contains("inactive ['INACTIVE']"), "{out}");
    assert!(out.contains("ghost GatewayNotFoundException"), "{out}");
    assert!(out.contains("deleted DELETED"), "{out}");
    assert!(out.contains("gone GatewayNotFoundException"), "{out}");
}
