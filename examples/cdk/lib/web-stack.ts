// A cluster, a Fargate task definition whose one container is a Wasm component, and a service
// behind an Application Load Balancer whose listener rule routes `/hello*` to it. wasmgate
// deploys the VPC, the load balancer and the IAM roles as records only; the listener rule
// becomes the gateway's route to the service.
import * as cdk from 'aws-cdk-lib';
import { Construct } from 'constructs';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';

export interface WebStackProps extends cdk.StackProps {
  /** The Wasm image of the web container. */
  image: string;
}

export class WebStack extends cdk.Stack {
  constructor(scope: Construct, id: string, props: WebStackProps) {
    super(scope, id, props);

    const vpc = new ec2.Vpc(this, 'Vpc', { maxAzs: 2, natGateways: 0 });
    const cluster = new ecs.Cluster(this, 'Cluster', { vpc });

    const taskDefinition = new ecs.FargateTaskDefinition(this, 'TaskDef', {
      cpu: 256,
      memoryLimitMiB: 512,
    });
    taskDefinition.addContainer('web', {
      image: ecs.ContainerImage.fromRegistry(props.image),
      memoryLimitMiB: 64,
      portMappings: [{ containerPort: 8080 }],
      environment: { GREETING: 'hello from the CDK' },
      logging: ecs.LogDrivers.awsLogs({ streamPrefix: 'web' }),
    });

    const service = new ecs.FargateService(this, 'Service', {
      cluster,
      taskDefinition,
      desiredCount: 1,
      minHealthyPercent: 100,
      circuitBreaker: { rollback: true },
    });

    const loadBalancer = new elbv2.ApplicationLoadBalancer(this, 'Lb', { vpc, internetFacing: true });
    const listener = loadBalancer.addListener('Http', {
      port: 80,
      defaultAction: elbv2.ListenerAction.fixedResponse(404, { messageBody: 'no route' }),
    });
    listener.addTargets('Web', {
      port: 8080,
      targets: [service],
      priority: 10,
      conditions: [elbv2.ListenerCondition.pathPatterns(['/hello*'])],
      healthCheck: { path: '/hello' },
    });

    new cdk.CfnOutput(this, 'ServiceName', { value: service.serviceName });
    new cdk.CfnOutput(this, 'ClusterName', { value: cluster.clusterName });
  }
}
